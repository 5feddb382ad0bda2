package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The rabbitmq_prometheus plugin's per-queue depth metrics, in the queue_coarse_metrics family
// of its /metrics/detailed endpoint (RabbitMQ 3.10 and later).
const (
	metricsPath   = "/metrics/detailed"
	metricsFamily = "queue_coarse_metrics"
	metricReady   = "rabbitmq_detailed_queue_messages_ready"
	metricUnacked = "rabbitmq_detailed_queue_messages_unacked"
)

// maxMetricsBodyBytes bounds the endpoint's answer: about 300 bytes per queue, so some
// 800,000 queues (a variable for tests).
var maxMetricsBodyBytes int64 = 256 << 20

// fetchDepthsFromMetrics reads every queue's ready and unacknowledged counts of the vhosts
// from the Prometheus endpoint of every node, one request each, side by side. The plugin
// answers from the statistics the queues last emitted, without the management plugin's
// per-queue formatting: for 1,000 queues about a tenth of the broker's CPU of the stats-free
// listing (docs/benchmarks.md, BenchmarkBrokerCPU1000). A queue appears only once it has
// emitted statistics, and only on the node that hosts it, so an absent one is unknown (just
// declared, the broker just restarted, no such queue, or its node not read), not missing.
//
// The refresh fails only when no node answers: a node down (a rolling upgrade) leaves its
// own queues unknown, with res.gap saying why, and the others read.
func (s *managementSource) fetchDepthsFromMetrics(ctx context.Context, vhosts []string, res *result) error {
	q := url.Values{"family": {metricsFamily}, "vhost": vhosts}
	type answer struct {
		stats map[qkey]queueStat
		err   error
	}
	answers := make([]answer, len(s.metrics))
	var wg sync.WaitGroup
	for i, e := range s.metrics {
		wg.Go(func() { answers[i].stats, answers[i].err = s.readMetrics(ctx, e, q) })
	}
	wg.Wait()
	var failed endpointErrors
	for i, a := range answers {
		if a.err != nil {
			failed = append(failed, fmt.Errorf("metrics endpoint %s: %w", s.metrics[i].base, a.err))
			continue
		}
		for k, st := range a.stats {
			// On two nodes at once: a quorum queue's leader moved between the two reads, and
			// the old one's entry is not removed yet. The larger counts are the safer.
			if had, ok := res.queues[k]; ok {
				st.ready, st.unacked = max(st.ready, had.ready), max(st.unacked, had.unacked)
			}
			res.queues[k] = st
		}
	}
	if len(failed) == len(s.metrics) {
		return failed
	}
	if len(failed) > 0 {
		res.gap = redactErr(fmt.Errorf("%d of %d metrics endpoints not read: %w", len(failed), len(s.metrics), failed), s.secrets...)
	}
	for _, v := range vhosts {
		res.statsOnly[v] = true
	}
	return nil
}

// endpointErrors are the failures of several endpoints, on one line.
type endpointErrors []error

func (e endpointErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e endpointErrors) Unwrap() []error { return e }

// readMetrics reads the depths of the vhosts of q from one node's endpoint.
func (s *managementSource) readMetrics(ctx context.Context, e endpoint, q url.Values) (map[qkey]queueStat, error) {
	var stats map[qkey]queueStat
	sent := time.Now()
	_, err := s.send(ctx, e, metricsPath, q, func(r io.Reader) error {
		body := &io.LimitedReader{R: r, N: maxMetricsBodyBytes + 1}
		var err error
		if stats, err = parseQueueMetrics(body, sent); err != nil {
			return err
		}
		if body.N == 0 { // a cut body would leave queues out, unseen
			return fmt.Errorf("the response is larger than %d MiB", maxMetricsBodyBytes>>20)
		}
		return nil
	})
	return stats, err
}

// metricsHeader asks for the text format, uncompressed: compressing it would cost the broker
// CPU, which is what this read saves, for about 300 KB per 1,000 queues.
var metricsHeader = http.Header{"Accept": {"text/plain;version=0.0.4"}, "Accept-Encoding": {"identity"}}

// metricsHint says what a refusal of the Prometheus endpoint asks of the operator.
func metricsHint(status int, _ string) string {
	switch status {
	case http.StatusNotFound, http.StatusNotAcceptable:
		return "the metrics url must be the rabbitmq_prometheus plugin's endpoint, RabbitMQ 3.10 or later, e.g. http://rabbit:15692"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "the endpoint wants credentials: give them in the metrics url"
	}
	return ""
}

// parseQueueMetrics reads the ready and unacknowledged counts by queue out of the text
// exposition of the queue_coarse_metrics family. A queue needs both to count; one with only
// one of them is left out (unknown), as is a line whose labels do not parse.
//
// RabbitMQ before rabbitmq-server #9656 (3.10, and 3.11 and 3.12 until late 2023) writes
// label values without escaping them (a queue named `a "b"` comes out as queue="a "b""),
// which a strict exposition parser rejects, and with it every other queue of the response;
// later releases escape them. Which of the two a response uses is not said, so each line
// is read both ways, as the format says (escaped) and raw, and counts for each name it can
// be: a name with a backslash reads differently the two ways, and the queue asked about is
// one of them. A name that two lines claim is unknown rather than another queue's: on a
// broker that writes raw and has the queues a\b and a\\b, the line of a\\b read escaped
// names a\b too.
func parseQueueMetrics(r io.Reader, at time.Time) (map[qkey]queueStat, error) {
	const hasReady, hasUnacked = 1, 2
	type partial struct {
		st          queueStat
		have, twice uint8
	}
	read := map[qkey]partial{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var which uint8
		var rest []byte
		switch {
		case bytes.HasPrefix(line, []byte(metricReady+"{")):
			which, rest = hasReady, line[len(metricReady):]
		case bytes.HasPrefix(line, []byte(metricUnacked+"{")):
			which, rest = hasUnacked, line[len(metricUnacked):]
		default:
			continue
		}
		keys, n, v, err := parseQueueSample(string(rest))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", line, err)
		}
		for _, k := range keys[:n] {
			p := read[k]
			if p.have&which != 0 {
				p.twice |= which
			}
			if which == hasReady {
				p.st.ready = v
			} else {
				p.st.unacked = v
			}
			p.have |= which
			read[k] = p
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the metrics: %w", err)
	}
	out := make(map[qkey]queueStat, len(read))
	for k, p := range read {
		if p.have == hasReady|hasUnacked && p.twice == 0 {
			p.st.at = at
			out[k] = p.st
		}
	}
	return out, nil
}

// parseQueueSample reads `{labels} value` (an optional timestamp after the value is
// ignored): the n (0 to 2) queues the labels can name, escaped or raw, and the value. n is
// 0 when the labels carry no vhost and queue; the error says the value is not a count.
func parseQueueSample(s string) (keys [2]qkey, n int, v int64, err error) {
	end := strings.LastIndexByte(s, '}')
	if end < 0 {
		return keys, 0, 0, errors.New("want {labels} value")
	}
	value := strings.TrimLeft(s[end+1:], " ")
	if sp := strings.IndexByte(value, ' '); sp >= 0 {
		value = value[:sp] // a timestamp follows
	}
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || f < 0 || f != math.Trunc(f) || f > math.MaxInt64/2 {
		return keys, 0, 0, fmt.Errorf("value %q is not a count", value)
	}
	block := s[1:end]
	if k, ok := escapedLabels(block); ok {
		keys[n], n = k, n+1
	}
	if k, ok := rawLabels(block); ok && (n == 0 || k != keys[0]) {
		keys[n], n = k, n+1
	}
	return keys, n, int64(f), nil
}

// escapedLabels reads the vhost and queue labels out of name="value",... as the exposition
// format writes it: backslash, double quote and line feed escaped with a backslash, nothing
// else. Both labels must be there.
func escapedLabels(s string) (qkey, bool) {
	var k qkey
	var hasV, hasQ bool
	for s != "" {
		eq := strings.Index(s, `="`)
		if eq <= 0 {
			return qkey{}, false
		}
		name := s[:eq]
		s = s[eq+2:]
		value, n, ok := unescapeLabel(s)
		if !ok {
			return qkey{}, false
		}
		switch name {
		case "vhost":
			k.vhost, hasV = value, true
		case "queue":
			k.name, hasQ = value, true
		}
		s = s[n:]
		switch {
		case s == "":
		case s[0] == ',':
			s = s[1:]
		default:
			return qkey{}, false
		}
	}
	return k, hasV && hasQ
}

// unescapeLabel reads one escaped label value up to its closing quote; n counts the bytes
// read, the quote included. Without escapes the value is a substring of s.
func unescapeLabel(s string) (value string, n int, ok bool) {
	i := strings.IndexAny(s, `"\`)
	if i < 0 {
		return "", 0, false
	}
	if s[i] == '"' {
		return s[:i], i + 1, true
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), i + 1, true
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		if i++; i == len(s) {
			return "", 0, false
		}
		switch s[i] {
		case '\\', '"':
			b.WriteByte(s[i])
		case 'n':
			b.WriteByte('\n')
		default:
			return "", 0, false
		}
	}
	return "", 0, false
}

// rawLabels reads the unescaped form RabbitMQ 3.10 writes: vhost="V",queue="Q", V and Q
// verbatim. A vhost whose name holds `",queue="` is not told apart; no other is misread.
func rawLabels(s string) (qkey, bool) {
	const head, mid = `vhost="`, `",queue="`
	if !strings.HasPrefix(s, head) || !strings.HasSuffix(s, `"`) {
		return qkey{}, false
	}
	body := s[len(head) : len(s)-1]
	i := strings.Index(body, mid)
	if i < 0 {
		return qkey{}, false
	}
	return qkey{vhost: body[:i], name: body[i+len(mid):]}, true
}
