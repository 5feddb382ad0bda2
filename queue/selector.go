package queue

import (
	"fmt"
	"math"
	"regexp"
	"time"
)

// Op combines the queues a pattern matches into one Snapshot.
type Op string

// Ops. The zero Op is OpSum.
const (
	OpSum Op = "sum"
	OpMax Op = "max"
	OpAvg Op = "avg"
)

// ParseOp parses "sum", "max" or "avg"; "" is OpSum.
func ParseOp(s string) (Op, error) {
	switch Op(s) {
	case "", OpSum:
		return OpSum, nil
	case OpMax, OpAvg:
		return Op(s), nil
	}
	return "", fmt.Errorf("operation %q: want sum, max or avg", s)
}

// DefaultVHost is the vhost of a Selector whose VHost is empty.
const DefaultVHost = "/"

// Selector picks queues on one broker: one exact queue name, or every queue of the vhost
// whose name matches a regular expression (Go syntax, unanchored: write ^…$ to match whole
// names), combined with Op.
type Selector struct {
	Broker string
	// VHost is the virtual host; empty means DefaultVHost.
	VHost string
	// Queue is an exact queue name. Exactly one of Queue and Pattern is set.
	Queue string
	// Pattern is a regular expression over queue names (management mode only).
	Pattern string
	// Op combines matched queues; the zero value is OpSum. Ignored for an exact Queue.
	Op Op
	// DepthsOnly says the caller reads Ready and Unacked only. When every selector watched on
	// a management-API broker says so, each refresh lists the queues without their
	// statistics (disable_stats, with queue totals) in one request: on RabbitMQ 3.10 with
	// 1,000 queues that costs the broker less than half the CPU of the listing with
	// statistics (BenchmarkBrokerCPU1000: 66-75 ms against 173-179 ms). Consumers, the rates and the statistics sample time
	// are then not read: Consumers is 0, RatesKnown false and At the time of the request.
	// Ignored in AMQP mode.
	DepthsOnly bool
}

// Validate reports the first bad field, naming it and its value. It never changes s.
func (s Selector) Validate() error {
	return s.validate(func(string) bool { return false })
}

// validate checks s, compiling its pattern unless compiled(pattern) says it is known good.
func (s Selector) validate(compiled func(pattern string) bool) error {
	if s.Broker == "" {
		return fmt.Errorf("selector: broker is empty")
	}
	switch {
	case s.Queue == "" && s.Pattern == "":
		return fmt.Errorf("selector on broker %q: give a queue name or a pattern", s.Broker)
	case s.Queue != "" && s.Pattern != "":
		return fmt.Errorf("selector on broker %q: queue %q and pattern %q are exclusive", s.Broker, s.Queue, s.Pattern)
	}
	if len(s.Queue) > 255 {
		return fmt.Errorf("selector on broker %q: queue name of %d bytes, at most 255", s.Broker, len(s.Queue))
	}
	if _, err := ParseOp(string(s.Op)); err != nil {
		return fmt.Errorf("selector on broker %q: %w", s.Broker, err)
	}
	if s.Pattern != "" && !compiled(s.Pattern) {
		if _, err := regexp.Compile(s.Pattern); err != nil {
			return fmt.Errorf("selector on broker %q: pattern %q: %w", s.Broker, s.Pattern, err)
		}
	}
	return nil
}

func (s Selector) vhost() string {
	if s.VHost == "" {
		return DefaultVHost
	}
	return s.VHost
}

func (s Selector) String() string {
	if s.Pattern != "" {
		return fmt.Sprintf("%s vhost %q pattern %q", s.Broker, s.vhost(), s.Pattern)
	}
	return fmt.Sprintf("%s vhost %q queue %q", s.Broker, s.vhost(), s.Queue)
}

// Snapshot is the state of the selected queues at one moment.
type Snapshot struct {
	// Ready is messages waiting for a consumer.
	Ready int64
	// Unacked is messages delivered and not yet acknowledged: work in progress. Always 0 when
	// InFlightVisible is false.
	Unacked int64
	// Consumers is the number of consumers.
	Consumers int64
	// PublishRate and DeliverRate are messages per second (management mode, when the broker
	// collects rates); meaningful only when RatesKnown.
	PublishRate, DeliverRate float64
	RatesKnown               bool
	// InFlightVisible is false when the source cannot see unacknowledged messages (AMQP):
	// an empty reading then does not prove the workers are idle.
	InFlightVisible bool
	// Queues is how many queues were combined (1 for an exact name).
	Queues int
	// At is the time the numbers describe: the management statistics sample they come from
	// (the time of the request when the broker gives none, e.g. for a queue declared since
	// the last sample), or the moment of the AMQP declare. For several queues, the oldest.
	At time.Time
	// Fetched is when the reader received them.
	Fetched time.Time
}

// queueStat is one queue as read in a refresh.
type queueStat struct {
	ready, unacked, consumers int64
	publishRate, deliverRate  float64
	ratesKnown                bool
	at                        time.Time
	// pending: the broker listed the queue without its depths (no statistics yet).
	pending bool
}

// combine folds the stats of matched queues with op. Integer averages round up, so a set
// with any work never averages to zero.
func combine(op Op, qs []queueStat, inFlight bool, fetched time.Time) Snapshot {
	s := Snapshot{Queues: len(qs), InFlightVisible: inFlight, Fetched: fetched, RatesKnown: len(qs) > 0}
	for i, q := range qs {
		if i == 0 || q.at.Before(s.At) {
			s.At = q.at
		}
		s.RatesKnown = s.RatesKnown && q.ratesKnown
		switch op {
		case OpMax:
			s.Ready = max(s.Ready, q.ready)
			s.Unacked = max(s.Unacked, q.unacked)
			s.Consumers = max(s.Consumers, q.consumers)
			s.PublishRate = math.Max(s.PublishRate, q.publishRate)
			s.DeliverRate = math.Max(s.DeliverRate, q.deliverRate)
		default:
			s.Ready += q.ready
			s.Unacked += q.unacked
			s.Consumers += q.consumers
			s.PublishRate += q.publishRate
			s.DeliverRate += q.deliverRate
		}
	}
	if op == OpAvg && len(qs) > 0 {
		n := int64(len(qs))
		ceilDiv := func(a int64) int64 { return (a + n - 1) / n }
		s.Ready, s.Unacked, s.Consumers = ceilDiv(s.Ready), ceilDiv(s.Unacked), ceilDiv(s.Consumers)
		s.PublishRate /= float64(n)
		s.DeliverRate /= float64(n)
	}
	if !s.RatesKnown {
		s.PublishRate, s.DeliverRate = 0, 0
	}
	return s
}

// Consumer is one consumer of a queue and the unacknowledged messages of its channel
// (management mode).
type Consumer struct {
	// PeerHost and PeerPort are the client end of the consumer's connection, as the broker
	// sees it (a pod's IP when workers connect directly).
	PeerHost string
	PeerPort int
	// Channel is the channel number on that connection.
	Channel int
	Tag     string
	Queue   string
	VHost   string
	// Unacked is the channel's unacknowledged messages. RabbitMQ counts them per channel:
	// when several consumers share a channel, each reports the channel's total.
	Unacked int64
	// Prefetch is the consumer's prefetch count (0 = unlimited).
	Prefetch int
}
