package queue

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultRefresh     = 5 * time.Second
	DefaultTimeout     = 10 * time.Second
	DefaultPageSize    = 500 // the management API's largest page
	DefaultInterestTTL = 10 * time.Minute
	DefaultMaxBackoff  = 30 * time.Second
)

// Options tunes a Reader. The zero value is usable: every zero field takes its Default….
type Options struct {
	// Refresh is how often each broker is read while someone is interested in it.
	Refresh time.Duration
	// Timeout bounds every request to a broker (an HTTP request, an AMQP dial, channel open
	// or declare).
	Timeout time.Duration
	// PageSize is the management API page size for the queue list (1…500).
	PageSize int
	// InterestTTL: a selector nobody asked about for this long stops being read.
	InterestTTL time.Duration
	// ConsumersTTL: the consumer detail of a selector (Consumers) nobody asked about for
	// this long stops being read. It costs the broker two listings of a whole vhost per
	// refresh, and is asked for only while a scale-down is pending: shorter than
	// InterestTTL. Default: 3 × Refresh.
	ConsumersTTL time.Duration
	// MaxBackoff caps the wait between AMQP reconnect attempts (which start at Refresh and
	// double).
	MaxBackoff time.Duration
	// WrapTransport, when set, wraps each management broker's HTTP transport (which carries
	// that broker's TLS settings), for instrumentation.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Validate reports the first bad field. It never changes o.
func (o Options) Validate() error {
	switch {
	case o.Refresh < 0:
		return fmt.Errorf("queue options: refresh %v is negative", o.Refresh)
	case o.Timeout < 0:
		return fmt.Errorf("queue options: timeout %v is negative", o.Timeout)
	case o.PageSize < 0 || o.PageSize > DefaultPageSize:
		return fmt.Errorf("queue options: page size %d, want 1 to %d (0 = %d)", o.PageSize, DefaultPageSize, DefaultPageSize)
	case o.InterestTTL < 0:
		return fmt.Errorf("queue options: interest ttl %v is negative", o.InterestTTL)
	case o.ConsumersTTL < 0:
		return fmt.Errorf("queue options: consumers ttl %v is negative", o.ConsumersTTL)
	case o.MaxBackoff < 0:
		return fmt.Errorf("queue options: max backoff %v is negative", o.MaxBackoff)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Refresh == 0 {
		o.Refresh = DefaultRefresh
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.InterestTTL == 0 {
		o.InterestTTL = DefaultInterestTTL
	}
	if o.ConsumersTTL == 0 {
		o.ConsumersTTL = 3 * o.Refresh
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	return o
}

// Reader serves queue snapshots from a cache that one goroutine per broker refreshes. Readers
// never touch the network: however many callers ask, each broker is read at most once per
// Refresh interval (plus one early read when a selector is asked for the first time).
type Reader struct {
	opts    Options
	brokers map[string]*broker

	// patterns holds every pattern that compiled, so that reads skip recompiling it.
	patterns sync.Map

	startOnce sync.Once
	closeOnce sync.Once
	closing   chan struct{}
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// NewReader validates the brokers and options and prepares a Reader; Start begins reading.
func NewReader(brokers []BrokerConfig, opts Options) (*Reader, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	r := &Reader{opts: opts, brokers: map[string]*broker{}, closing: make(chan struct{})}
	for _, c := range brokers {
		if err := c.Validate(); err != nil {
			r.closeSources()
			return nil, err
		}
		if _, dup := r.brokers[c.Name]; dup {
			r.closeSources()
			return nil, fmt.Errorf("broker %q configured twice", c.Name)
		}
		src, err := newSource(c, opts)
		if err != nil {
			r.closeSources()
			return nil, err
		}
		r.brokers[c.Name] = &broker{
			cfg:      c,
			mode:     c.Mode(),
			src:      src,
			opts:     opts,
			wake:     make(chan struct{}, 1),
			interest: map[ikey]*interest{},
			done:     make(chan struct{}),
		}
	}
	return r, nil
}

// Start launches one refresh goroutine per broker; they run until ctx ends or Close. Calls
// after the first do nothing.
func (r *Reader) Start(ctx context.Context) {
	r.startOnce.Do(func() {
		ctx, r.cancel = context.WithCancel(ctx)
		for _, b := range r.brokers {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				b.run(ctx)
			}()
		}
	})
}

// Close stops the refresh goroutines, waits for them and closes broker connections. Pending
// and later calls return ErrClosed.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		close(r.closing)
		r.startOnce.Do(func() {}) // a later Start does nothing
		if r.cancel != nil {
			r.cancel()
		}
		r.wg.Wait()
		r.closeSources()
	})
	return nil
}

func (r *Reader) closeSources() {
	for _, b := range r.brokers {
		b.src.close()
	}
}

func (r *Reader) validate(sel Selector) error {
	err := sel.validate(func(p string) bool { _, ok := r.patterns.Load(p); return ok })
	if err == nil && sel.Pattern != "" {
		r.patterns.Store(sel.Pattern, struct{}{})
	}
	return err
}

func (r *Reader) broker(name string) (*broker, error) {
	b, ok := r.brokers[name]
	if !ok {
		return nil, fmt.Errorf("broker %q: %w", name, ErrUnknownBroker)
	}
	return b, nil
}

// Snapshot returns the selected queues as of the broker's last refresh. The first call for a
// selector registers it and waits (until ctx ends) for a refresh that includes it; later calls
// return at once from the cache. When the last refresh failed, Snapshot returns that error
// (wrapped, credentials redacted), never an empty snapshot. A queue that does not exist, or a
// pattern that matches none, is ErrNotFound.
func (r *Reader) Snapshot(ctx context.Context, sel Selector) (Snapshot, error) {
	if err := r.validate(sel); err != nil {
		return Snapshot{}, err
	}
	b, err := r.broker(sel.Broker)
	if err != nil {
		return Snapshot{}, err
	}
	if b.mode == ModeAMQP && sel.Pattern != "" {
		return Snapshot{}, fmt.Errorf("%s: patterns need the management API (an http:// or https:// broker url); AMQP reads exact queue names only: %w", sel, ErrUnsupported)
	}
	k := ikey{vhost: sel.vhost(), queue: sel.Queue, pattern: sel.Pattern, depthsOnly: sel.DepthsOnly}
	return b.snapshot(ctx, r.closing, k, sel)
}

// Consumers lists the consumers of the selected queues with their channel's unacknowledged
// messages, as of the last refresh (management mode only; AMQP mode returns ErrUnsupported).
// The first call turns on reading /api/consumers and /api/channels for the selector's vhost
// and waits for a refresh that includes them.
func (r *Reader) Consumers(ctx context.Context, sel Selector) ([]Consumer, error) {
	if err := r.validate(sel); err != nil {
		return nil, err
	}
	b, err := r.broker(sel.Broker)
	if err != nil {
		return nil, err
	}
	if b.mode == ModeAMQP {
		return nil, fmt.Errorf("%s: per-consumer detail needs the management API (an http:// or https:// broker url): %w", sel, ErrUnsupported)
	}
	k := ikey{vhost: sel.vhost(), queue: sel.Queue, pattern: sel.Pattern, consumers: true}
	res, in, err := b.await(ctx, r.closing, k)
	if err != nil {
		return nil, err
	}
	var out []Consumer
	for _, c := range res.consumers {
		if c.VHost != k.vhost {
			continue
		}
		if (in.re != nil && in.re.MatchString(c.Queue)) || (in.re == nil && c.Queue == k.queue) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Refreshed returns a channel closed when the next refresh of the broker completes (or the
// one in progress). For an unknown broker the channel is already closed.
func (r *Reader) Refreshed(name string) <-chan struct{} {
	b, ok := r.brokers[name]
	if !ok {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done
}

// Stats describes the reading of one broker, for metrics.
type Stats struct {
	Mode Mode
	// Requests is every request sent to the broker: HTTP requests, or AMQP dials, channel
	// opens and declares.
	Requests int64
	// Refreshes and Failures count completed refreshes and the failed ones among them.
	Refreshes, Failures int64
	// Partial counts the successful refreshes that could not read every metrics endpoint
	// of the broker (BrokerConfig.MetricsURLs), whose nodes' queues were unknown then.
	Partial int64
	// LastRefresh is when the last refresh ended, LastDuration how long it took, LastError
	// its error (nil on success; credentials redacted).
	LastRefresh  time.Time
	LastDuration time.Duration
	LastError    error
	// LastSuccess is when the last successful refresh ended (zero before the first).
	LastSuccess time.Time
	// Selectors is how many selectors are being read.
	Selectors int
}

// BrokerStats returns the reading statistics of one broker.
func (r *Reader) BrokerStats(name string) (Stats, error) {
	b, err := r.broker(name)
	if err != nil {
		return Stats{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{
		Mode:         b.mode,
		Requests:     b.src.requests(),
		Refreshes:    b.refreshes,
		Failures:     b.failures,
		Partial:      b.partial,
		LastRefresh:  b.fetched,
		LastDuration: b.lastDur,
		LastError:    b.err,
		LastSuccess:  b.lastOK,
		Selectors:    len(b.interest),
	}, nil
}

// Brokers lists the configured broker names, sorted.
func (r *Reader) Brokers() []string {
	out := make([]string, 0, len(r.brokers))
	for n := range r.brokers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ikey is one thing callers want read from a broker.
type ikey struct {
	vhost, queue, pattern string
	consumers             bool
	depthsOnly            bool // Selector.DepthsOnly
}

type interest struct {
	since    uint64 // first refresh sequence number that includes it
	lastUsed time.Time
	re       *regexp.Regexp
}

type qkey struct{ vhost, name string }

// plan is what one refresh reads.
type plan struct {
	vhosts         []string // vhosts with queue selectors, sorted
	queues         []qkey   // exact names, sorted
	consumerVHosts []string // vhosts with consumer selectors, sorted
	// depthsOnly: every queue selector is Selector.DepthsOnly, so the listing may leave out
	// the statistics.
	depthsOnly bool
}

// result is what one refresh read.
type result struct {
	queues map[qkey]queueStat
	// listed: vhosts whose whole queue list was read, so an absent queue does not exist.
	listed map[string]bool
	// missing: exact names the broker said do not exist.
	missing map[qkey]bool
	// statsOnly: vhosts whose queues were read from the broker's statistics, where a queue
	// appears once it has emitted them: an absent queue there is unknown, not missing.
	statsOnly map[string]bool
	// gap says which of the broker's metrics endpoints were not read (nil when all were):
	// the queues of those nodes are unknown this time.
	gap       error
	consumers []Consumer
	fetched   time.Time
	memo      map[ikey]memoEntry
}

type memoEntry struct {
	snap Snapshot
	err  error
}

func newResult() *result {
	return &result{queues: map[qkey]queueStat{}, listed: map[string]bool{}, missing: map[qkey]bool{}, statsOnly: map[string]bool{}, memo: map[ikey]memoEntry{}}
}

// absentWhy lists why a queue can be absent from the broker's queue metrics.
func (res *result) absentWhy() string {
	why := "just declared, the broker just restarted, its node's metrics url not given, or no such queue"
	if res.gap != nil {
		why += "; " + res.gap.Error()
	}
	return why
}

// source reads one broker.
type source interface {
	fetch(ctx context.Context, p plan) (*result, error)
	requests() int64
	close()
}

func newSource(c BrokerConfig, o Options) (source, error) {
	if c.Mode() == ModeAMQP {
		return newAMQPSource(c, o)
	}
	return newManagementSource(c, o)
}

type broker struct {
	cfg  BrokerConfig
	mode Mode
	src  source
	opts Options
	wake chan struct{}

	mu        sync.Mutex
	interest  map[ikey]*interest
	started   uint64 // refreshes begun
	completed uint64 // refreshes ended
	done      chan struct{}
	res       *result
	err       error
	fetched   time.Time
	lastOK    time.Time
	lastDur   time.Duration
	refreshes int64
	failures  int64
	partial   int64
}

func (b *broker) snapshot(ctx context.Context, closing <-chan struct{}, k ikey, sel Selector) (Snapshot, error) {
	res, in, err := b.await(ctx, closing, k)
	if err != nil {
		return Snapshot{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if m, ok := res.memo[k]; ok {
		return m.snap, m.err
	}
	snap, err := b.compute(res, in, k, sel)
	res.memo[k] = memoEntry{snap, err}
	return snap, err
}

func (b *broker) compute(res *result, in *interest, k ikey, sel Selector) (Snapshot, error) {
	inFlight := b.mode == ModeManagement
	if in.re == nil {
		qk := qkey{k.vhost, k.queue}
		if st, ok := res.queues[qk]; ok {
			if st.pending {
				return Snapshot{}, fmt.Errorf("%s: %w", sel, ErrStatsPending)
			}
			return combine(OpSum, []queueStat{st}, inFlight, res.fetched), nil
		}
		if res.listed[k.vhost] || res.missing[qk] {
			return Snapshot{}, fmt.Errorf("%s: %w", sel, ErrNotFound)
		}
		if res.statsOnly[k.vhost] {
			return Snapshot{}, fmt.Errorf("%s: not in the broker's queue metrics (%s): %w", sel, res.absentWhy(), ErrStatsPending)
		}
		return Snapshot{}, fmt.Errorf("%s: not in the last refresh of the broker", sel)
	}
	var qs []queueStat
	for qk, st := range res.queues {
		if qk.vhost == k.vhost && in.re.MatchString(qk.name) {
			if st.pending {
				return Snapshot{}, fmt.Errorf("%s: queue %q: %w", sel, qk.name, ErrStatsPending)
			}
			qs = append(qs, st)
		}
	}
	if len(qs) == 0 {
		if res.statsOnly[k.vhost] {
			return Snapshot{}, fmt.Errorf("%s: no queue in the broker's queue metrics matches (%s): %w", sel, res.absentWhy(), ErrStatsPending)
		}
		return Snapshot{}, fmt.Errorf("%s: no queue matches: %w", sel, ErrNotFound)
	}
	op, _ := ParseOp(string(sel.Op))
	return combine(op, qs, inFlight, res.fetched), nil
}

// await registers k (waking the refresh loop the first time) and waits until a refresh that
// includes k has completed. It returns that refresh's result, or its error.
func (b *broker) await(ctx context.Context, closing <-chan struct{}, k ikey) (*result, *interest, error) {
	b.mu.Lock()
	in, ok := b.interest[k]
	if !ok {
		in = &interest{since: b.started + 1}
		if k.pattern != "" {
			in.re = regexp.MustCompile(k.pattern) // validated by the caller
		}
		b.interest[k] = in
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	in.lastUsed = time.Now()
	for b.completed < in.since {
		ch := b.done
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for first read of broker %q: %w", b.cfg.Name, ctx.Err())
		case <-closing:
			return nil, nil, ErrClosed
		}
		b.mu.Lock()
	}
	res, err := b.res, b.err
	b.mu.Unlock()
	select {
	case <-closing:
		return nil, nil, ErrClosed
	default:
	}
	if err != nil {
		return nil, nil, err
	}
	return res, in, nil
}

func (b *broker) run(ctx context.Context) {
	t := time.NewTicker(b.opts.Refresh)
	defer t.Stop()
	for {
		if b.refresh(ctx) {
			t.Reset(b.opts.Refresh)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.wake:
		}
	}
}

// refresh reads the broker once if anyone is interested; it reports whether it did.
func (b *broker) refresh(ctx context.Context) bool {
	b.mu.Lock()
	p := b.planLocked(time.Now())
	if len(p.vhosts) == 0 && len(p.consumerVHosts) == 0 {
		b.mu.Unlock()
		return false
	}
	b.started++
	seq := b.started
	b.mu.Unlock()

	start := time.Now()
	res, err := b.src.fetch(ctx, p)
	end := time.Now()
	if ctx.Err() != nil {
		return true // closing: waiters return ErrClosed
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.completed = seq
	b.refreshes++
	b.fetched, b.lastDur = end, end.Sub(start)
	if err != nil {
		b.failures++
		b.res = nil
		b.err = redactErr(fmt.Errorf("read broker %q: %w", b.cfg.Name, err), b.cfg.secrets()...)
	} else {
		res.fetched = end
		b.res, b.err, b.lastOK = res, nil, end
		if res.gap != nil {
			b.partial++
		}
	}
	close(b.done)
	b.done = make(chan struct{})
	return true
}

// planLocked drops expired interest and lists what the next refresh reads.
func (b *broker) planLocked(now time.Time) plan {
	vh, cvh, qs := map[string]bool{}, map[string]bool{}, map[qkey]bool{}
	depthsOnly := true
	for k, in := range b.interest {
		ttl := b.opts.InterestTTL
		if k.consumers {
			ttl = b.opts.ConsumersTTL
		}
		if now.Sub(in.lastUsed) > ttl {
			delete(b.interest, k)
			continue
		}
		if k.consumers {
			cvh[k.vhost] = true
			continue
		}
		vh[k.vhost] = true
		depthsOnly = depthsOnly && k.depthsOnly
		if k.pattern == "" {
			qs[qkey{k.vhost, k.queue}] = true
		}
	}
	p := plan{depthsOnly: depthsOnly}
	p.vhosts, p.consumerVHosts = sortedKeys(vh), sortedKeys(cvh)
	for q := range qs {
		p.queues = append(p.queues, q)
	}
	sort.Slice(p.queues, func(i, j int) bool {
		if p.queues[i].vhost != p.queues[j].vhost {
			return p.queues[i].vhost < p.queues[j].vhost
		}
		return p.queues[i].name < p.queues[j].name
	})
	return p
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
