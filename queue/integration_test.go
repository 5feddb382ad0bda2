package queue_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	"github.com/headroom-autoscaler/headroom/queue"
)

// modes runs a test against both ways of reading the same real broker.
var modes = []struct {
	name   string
	config func(r *lab.RabbitMQ) queue.BrokerConfig
}{
	{"management", func(r *lab.RabbitMQ) queue.BrokerConfig {
		return queue.BrokerConfig{Name: "rmq", URL: r.ManagementURL(), Username: "guest", Password: "guest"}
	}},
	{"amqp", func(r *lab.RabbitMQ) queue.BrokerConfig {
		return queue.BrokerConfig{Name: "rmq", URL: r.AMQPURL()}
	}},
}

const testRefresh = 200 * time.Millisecond

func startReader(t *testing.T, cfg queue.BrokerConfig, opts queue.Options) *queue.Reader {
	t.Helper()
	if opts.Refresh == 0 {
		opts.Refresh = testRefresh
	}
	rd, err := queue.NewReader([]queue.BrokerConfig{cfg}, opts)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	rd.Start(t.Context())
	t.Cleanup(func() { _ = rd.Close() })
	return rd
}

// waitSnapshot polls until ok accepts a snapshot (the management statistics lag about a
// second) and returns it; on timeout it fails with the last reading.
func waitSnapshot(t *testing.T, rd *queue.Reader, sel queue.Selector, what string, ok func(queue.Snapshot, error) bool) queue.Snapshot {
	t.Helper()
	var snap queue.Snapshot
	var serr error
	err := lab.WaitFor(t.Context(), what, 30*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
		snap, serr = rd.Snapshot(ctx, sel)
		if ok(snap, serr) {
			return nil
		}
		return fmt.Errorf("last snapshot %+v, error %v", snap, serr)
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return snap
}

func setup(t *testing.T, r *lab.RabbitMQ, vhost string, queues map[string]int) {
	t.Helper()
	a := r.Admin()
	if err := a.AddVHost(t.Context(), vhost); err != nil {
		t.Fatalf("add vhost %q: %v", vhost, err)
	}
	for q, n := range queues {
		if err := a.DeclareQueue(t.Context(), vhost, q); err != nil {
			t.Fatalf("declare %q: %v", q, err)
		}
		if err := a.Publish(t.Context(), vhost, q, n); err != nil {
			t.Fatalf("publish to %q: %v", q, err)
		}
	}
}

// holdMessages consumes from a queue with a prefetch and never acknowledges, as a busy
// worker does. It returns the local address of its connection.
func holdMessages(t *testing.T, r *lab.RabbitMQ, vhost, q, tag string, prefetch int) *net.TCPAddr {
	t.Helper()
	conn, err := amqp.DialConfig(r.AMQPURL(), amqp.Config{Vhost: vhost})
	if err != nil {
		t.Fatalf("consumer dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("consumer channel: %v", err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.Fatalf("qos: %v", err)
	}
	deliveries, err := ch.Consume(q, tag, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	for i := 0; i < prefetch; i++ {
		select {
		case <-deliveries:
		case <-time.After(10 * time.Second):
			t.Fatalf("consumer got %d deliveries, want %d", i, prefetch)
		}
	}
	return conn.LocalAddr().(*net.TCPAddr)
}

func TestDepthsWithBusyConsumer(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			vhost := "depth-" + m.name
			setup(t, r, vhost, map[string]int{"jobs": 5})
			local := holdMessages(t, r, vhost, "jobs", "worker-1", 2)
			rd := startReader(t, m.config(r), queue.Options{})
			sel := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs"}

			want := queue.Snapshot{Ready: 3, Unacked: 2, Consumers: 1, Queues: 1, InFlightVisible: true}
			if m.name == "amqp" {
				want.Unacked, want.InFlightVisible = 0, false
			}
			got := waitSnapshot(t, rd, sel, "depths", func(s queue.Snapshot, err error) bool {
				return err == nil && s.Ready == want.Ready && s.Unacked == want.Unacked && s.Consumers == want.Consumers
			})
			if got.Queues != want.Queues || got.InFlightVisible != want.InFlightVisible {
				t.Errorf("got queues %d in-flight visible %v, want %d %v", got.Queues, got.InFlightVisible, want.Queues, want.InFlightVisible)
			}
			if got.At.IsZero() || got.At.After(got.Fetched) {
				t.Errorf("got At %v Fetched %v, want a non-zero At no later than Fetched", got.At, got.Fetched)
			}

			consumers, err := rd.Consumers(t.Context(), sel)
			if m.name == "amqp" {
				if !errors.Is(err, queue.ErrUnsupported) {
					t.Errorf("Consumers in AMQP mode: got %v, want ErrUnsupported", err)
				}
				return
			}
			wantC := queue.Consumer{PeerHost: "127.0.0.1", PeerPort: local.Port, Channel: 1, Tag: "worker-1", Queue: "jobs", VHost: vhost, Unacked: 2, Prefetch: 2}
			err = lab.WaitFor(t.Context(), "consumer detail", 30*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
				consumers, err = rd.Consumers(ctx, sel)
				if err != nil {
					return err
				}
				if len(consumers) != 1 || consumers[0] != wantC {
					return fmt.Errorf("got %+v, want [%+v]", consumers, wantC)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPatternOps(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	vhost := "pattern"
	setup(t, r, vhost, map[string]int{"task-a": 2, "task-b": 5, "task-c": 0, "other": 9})

	t.Run("management", func(t *testing.T) {
		rd := startReader(t, modes[0].config(r), queue.Options{})
		tests := []struct {
			name      string
			op        queue.Op
			wantReady int64
		}{
			{name: "sum", op: queue.OpSum, wantReady: 7},
			{name: "max", op: queue.OpMax, wantReady: 5},
			{name: "avg rounds up", op: queue.OpAvg, wantReady: 3},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				sel := queue.Selector{Broker: "rmq", VHost: vhost, Pattern: "^task-", Op: tc.op}
				got := waitSnapshot(t, rd, sel, "pattern "+tc.name, func(s queue.Snapshot, err error) bool {
					return err == nil && s.Ready == tc.wantReady
				})
				if got.Queues != 3 {
					t.Errorf("got %d queues matched, want 3", got.Queues)
				}
			})
		}
	})
	t.Run("amqp", func(t *testing.T) {
		rd := startReader(t, modes[1].config(r), queue.Options{})
		_, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", VHost: vhost, Pattern: "^task-"})
		if !errors.Is(err, queue.ErrUnsupported) || !strings.Contains(err.Error(), "exact queue names") {
			t.Errorf("pattern in AMQP mode: got %v, want ErrUnsupported saying exact names only", err)
		}
		got := waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: vhost, Queue: "task-b"}, "exact", func(s queue.Snapshot, err error) bool {
			return err == nil && s.Ready == 5
		})
		if got.InFlightVisible {
			t.Errorf("got InFlightVisible true over AMQP, want false")
		}
	})
}

// recordingTransport counts the requests that reach the broker, and records the path and
// last vhost query of each (the paths of /api/queues/... as /api/queues).
type recordingTransport struct {
	next  http.RoundTripper
	n     atomic.Int64
	mu    sync.Mutex
	paths map[string]int
	query map[string][]string // the last query of each path
}

func (c *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	path := req.URL.Path
	if strings.HasPrefix(path, "/api/queues") {
		path = "/api/queues"
	}
	c.mu.Lock()
	if c.paths == nil {
		c.paths, c.query = map[string]int{}, map[string][]string{}
	}
	c.paths[path]++
	c.query[path] = req.URL.Query()["vhost"]
	c.mu.Unlock()
	return c.next.RoundTrip(req)
}

func (c *recordingTransport) wrap(rt http.RoundTripper) http.RoundTripper {
	c.next = rt
	return c
}

// counts is the number of requests by path.
func (c *recordingTransport) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.paths)
}

func TestPagination(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	vhost := "paging"
	setup(t, r, vhost, map[string]int{"p-00": 1})
	var names []string
	for i := 1; i < 25; i++ {
		names = append(names, fmt.Sprintf("p-%02d", i))
	}
	if err := r.Admin().DeclareQueues(t.Context(), vhost, names...); err != nil {
		t.Fatalf("declare queues: %v", err)
	}
	if err := r.Admin().Publish(t.Context(), vhost, "p-24", 2); err != nil {
		t.Fatalf("publish: %v", err)
	}

	var count recordingTransport
	rd := startReader(t, modes[0].config(r), queue.Options{PageSize: 10, WrapTransport: count.wrap})
	all := waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: vhost, Pattern: "^p-"}, "all pages", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Queues == 25 && s.Ready == 3
	})
	if all.Unacked != 0 {
		t.Errorf("got unacked %d, want 0", all.Unacked)
	}
	waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: vhost, Queue: "p-24"}, "queue on the last page", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 2
	})

	// Each refresh reads exactly three pages.
	st := settledStats(t, rd, func(st queue.Stats) int64 { return 3 * st.Refreshes })
	if got := count.n.Load(); got < st.Requests || got > st.Requests+3 {
		t.Errorf("transport counted %d requests, stats say %d", got, st.Requests)
	}
}

// settledStats waits for the end of a refresh and returns the broker's stats once their
// request count equals want(stats). A refresh that starts between the wait and the reading
// adds requests not yet matched by a completed refresh; then it tries again at the next
// boundary, and fails after a few tries.
func settledStats(t *testing.T, rd *queue.Reader, want func(queue.Stats) int64) queue.Stats {
	t.Helper()
	var st queue.Stats
	for try := 0; try < 5; try++ {
		<-rd.Refreshed("rmq")
		var err error
		if st, err = rd.BrokerStats("rmq"); err != nil {
			t.Fatal(err)
		}
		if st.Requests == want(st) {
			return st
		}
	}
	t.Fatalf("got %d requests for %d refreshes, want %d", st.Requests, st.Refreshes, want(st))
	return st
}

func TestMissingQueueThenDeclared(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			vhost := "missing-" + m.name
			setup(t, r, vhost, nil)
			rd := startReader(t, m.config(r), queue.Options{})
			sel := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "late"}
			if _, err := rd.Snapshot(t.Context(), sel); !errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("before declare: got error %v, want ErrNotFound", err)
			}
			if m.name == "management" {
				_, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", VHost: vhost, Pattern: "^late"})
				if !errors.Is(err, queue.ErrNotFound) {
					t.Errorf("pattern matching nothing: got %v, want ErrNotFound", err)
				}
				_, err = rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", VHost: "no-such-vhost", Queue: "late"})
				if !errors.Is(err, queue.ErrNotFound) {
					t.Errorf("queue in a missing vhost: got %v, want ErrNotFound", err)
				}
			}
			if err := r.Admin().DeclareQueue(t.Context(), vhost, "late"); err != nil {
				t.Fatal(err)
			}
			if err := r.Admin().Publish(t.Context(), vhost, "late", 1); err != nil {
				t.Fatal(err)
			}
			waitSnapshot(t, rd, sel, "declared queue", func(s queue.Snapshot, err error) bool {
				return err == nil && s.Ready == 1
			})
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	const secret = "Wr0ng-s3cret!"
	tests := []struct {
		name  string
		cfg   queue.BrokerConfig
		check func(t *testing.T, err error)
	}{
		{
			name: "management password field",
			cfg:  queue.BrokerConfig{Name: "rmq", URL: r.ManagementURL(), Username: "guest", Password: secret},
			check: func(t *testing.T, err error) {
				var he *queue.HTTPError
				if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
					t.Errorf("got %v, want an HTTPError with status 401", err)
				}
			},
		},
		{
			name: "management password in url",
			cfg:  queue.BrokerConfig{Name: "rmq", URL: strings.Replace(r.ManagementURL(), "http://", "http://guest:"+secret+"@", 1)},
			check: func(t *testing.T, err error) {
				if !strings.Contains(err.Error(), "username and password") {
					t.Errorf("got %v, want it to say to check the username and password", err)
				}
			},
		},
		{
			name: "amqp",
			cfg:  queue.BrokerConfig{Name: "rmq", URL: strings.Replace(r.AMQPURL(), "guest:guest", "guest:"+secret, 1)},
			check: func(t *testing.T, err error) {
				var ae *amqp.Error
				if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
					t.Errorf("got %v, want an amqp.Error with code %d (access refused)", err, amqp.AccessRefused)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rd := startReader(t, tc.cfg, queue.Options{})
			_, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", Queue: "anything"})
			if err == nil || errors.Is(err, queue.ErrNotFound) {
				t.Fatalf("got %v, want an authentication error", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the password", err)
			}
			tc.check(t, err)
			st, _ := rd.BrokerStats("rmq")
			if st.LastError == nil || strings.Contains(st.LastError.Error(), secret) {
				t.Errorf("BrokerStats LastError %v: want an error without the password", st.LastError)
			}
		})
	}
}

// TestBrokerCrashAndRecovery crashes its own broker under both readers, checks they report
// errors (never an empty queue), restarts the broker and checks the same readers recover.
func TestBrokerCrashAndRecovery(t *testing.T) {
	r := labtest.RabbitMQ(t) // its own: this test crashes it
	setup(t, r, "/", map[string]int{"durable": 3})

	readers := map[string]*queue.Reader{}
	sel := queue.Selector{Broker: "rmq", Queue: "durable"}
	for _, m := range modes {
		readers[m.name] = startReader(t, m.config(r), queue.Options{MaxBackoff: time.Second, Timeout: 2 * time.Second})
		waitSnapshot(t, readers[m.name], sel, m.name+" before crash", func(s queue.Snapshot, err error) bool {
			return err == nil && s.Ready == 3
		})
	}

	t.Logf("reading; crashing the broker")
	r.Kill()
	for name, rd := range readers {
		snap := waitSnapshot(t, rd, sel, name+" error while down", func(s queue.Snapshot, err error) bool {
			return err != nil
		})
		if snap != (queue.Snapshot{}) {
			t.Errorf("%s: got snapshot %+v with the error, want the zero Snapshot", name, snap)
		}
		_, err := rd.Snapshot(t.Context(), sel)
		if errors.Is(err, queue.ErrNotFound) || strings.Contains(err.Error(), "guest:guest") {
			t.Errorf("%s while down: got %v, want a connection error without credentials", name, err)
		}
		st, _ := rd.BrokerStats("rmq")
		if st.LastError == nil || st.Failures == 0 || st.LastSuccess.IsZero() || !st.LastSuccess.Before(st.LastRefresh) {
			t.Errorf("%s stats while down: got %+v, want a last error, failures, and a last success before the last refresh", name, st)
		}
	}

	t.Logf("errors seen; restarting the broker")
	if err := r.Restart(t.Context()); err != nil {
		t.Fatalf("restart broker: %v", err)
	}
	// What the broker recovers after a crash is its business (once in a while, under heavy
	// load, this queue was gone after the restart); the readers must come back either way.
	// Declaring again is a no-op when the queue survived.
	if err := r.Admin().DeclareQueue(t.Context(), "/", "durable"); err != nil {
		t.Fatalf("declare after restart: %v", err)
	}
	for name, rd := range readers {
		snap := waitSnapshot(t, rd, sel, name+" after restart", func(s queue.Snapshot, err error) bool {
			return err == nil && s.Queues == 1
		})
		if snap.Ready != 3 {
			t.Logf("%s: %d ready messages after the crash, 3 before", name, snap.Ready)
		}
	}
}

// TestManyReaders has 200 goroutines read the same queue in a loop: the broker still sees
// one refresh per interval (one request per refresh in management mode; a channel open and
// a declare in AMQP mode).
func TestManyReaders(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	setup(t, r, "many", map[string]int{"q": 1})
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			var count recordingTransport
			refresh := 250 * time.Millisecond
			rd := startReader(t, m.config(r), queue.Options{Refresh: refresh, WrapTransport: count.wrap})
			sel := queue.Selector{Broker: "rmq", VHost: "many", Queue: "q"}
			start := time.Now()
			waitSnapshot(t, rd, sel, "first reading", func(s queue.Snapshot, err error) bool {
				return err == nil && s.Ready == 1
			})

			const readers = 200
			var calls atomic.Int64
			var wg sync.WaitGroup
			deadline := start.Add(2 * time.Second)
			errs := make(chan error, readers)
			for i := 0; i < readers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						s, err := rd.Snapshot(t.Context(), sel)
						if err != nil || s.Ready != 1 {
							errs <- fmt.Errorf("got %+v, %v; want ready 1", s, err)
							return
						}
						calls.Add(1)
						time.Sleep(time.Millisecond)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			perRefresh := func(st queue.Stats) int64 { return st.Refreshes } // one /api/queues page
			if m.name == "amqp" {
				// one dial, then a channel and a declare per refresh
				perRefresh = func(st queue.Stats) int64 { return 1 + 2*st.Refreshes }
			}
			st := settledStats(t, rd, perRefresh)
			// Ticks that fit in the elapsed time, plus the first read and the settling ones.
			maxRefreshes := int64(time.Since(start)/refresh) + 2
			if st.Refreshes > maxRefreshes {
				t.Errorf("got %d refreshes in %v, want at most %d (one per %v)", st.Refreshes, elapsed, maxRefreshes, refresh)
			}
			if got := count.n.Load(); m.name == "management" && (got < st.Requests || got > st.Requests+1) {
				t.Errorf("transport counted %d requests, stats say %d", got, st.Requests)
			}
			if calls.Load() < readers {
				t.Errorf("got %d snapshot calls, want at least %d", calls.Load(), readers)
			}
			t.Logf("%d snapshot calls, %d refreshes, %d broker requests in %v", calls.Load(), st.Refreshes, st.Requests, elapsed)
		})
	}
}

// TestInterestLifecycle: a first read with a context already done returns at once with the
// context's error yet registers the selector; a selector nobody reads any more stops being
// read after InterestTTL, and then the broker sees no requests at all.
func TestInterestLifecycle(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	setup(t, r, "lifecycle", map[string]int{"q": 0})
	var count recordingTransport
	rd := startReader(t, modes[0].config(r), queue.Options{Refresh: 100 * time.Millisecond, InterestTTL: 500 * time.Millisecond, WrapTransport: count.wrap})
	sel := queue.Selector{Broker: "rmq", VHost: "lifecycle", Queue: "q"}

	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := rd.Snapshot(done, sel); !errors.Is(err, context.Canceled) {
		t.Fatalf("first read with a done context: got %v, want context.Canceled", err)
	}
	waitSnapshot(t, rd, sel, "registered selector", func(s queue.Snapshot, err error) bool { return err == nil })

	err := lab.WaitFor(t.Context(), "interest to expire", 10*time.Second, 100*time.Millisecond, func(context.Context) error {
		st, _ := rd.BrokerStats("rmq")
		if st.Selectors != 0 {
			return fmt.Errorf("%d selectors still watched", st.Selectors)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := count.n.Load()
	time.Sleep(500 * time.Millisecond) // five refresh intervals
	if got := count.n.Load(); got != before {
		t.Errorf("got %d requests with nothing watched, want 0", got-before)
	}
}

// TestConsumersInterestExpiresFirst: consumer detail nobody asks for any more stops being
// read after ConsumersTTL, while the queue itself is still read (one request per refresh).
func TestConsumersInterestExpiresFirst(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	setup(t, r, "consumers-ttl", map[string]int{"q": 1})
	rd := startReader(t, modes[0].config(r), queue.Options{Refresh: 100 * time.Millisecond, ConsumersTTL: 300 * time.Millisecond})
	sel := queue.Selector{Broker: "rmq", VHost: "consumers-ttl", Queue: "q"}
	if _, err := rd.Consumers(t.Context(), sel); err != nil {
		t.Fatalf("consumers: %v", err)
	}
	waitSnapshot(t, rd, sel, "queue read", func(s queue.Snapshot, err error) bool { return err == nil })
	// Both asked for: queues, consumers and channels at every refresh.
	for range 3 {
		if _, err := rd.Snapshot(t.Context(), sel); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Consumers(t.Context(), sel); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	err := lab.WaitFor(t.Context(), "consumer interest to expire", 10*time.Second, 100*time.Millisecond, func(context.Context) error {
		if _, err := rd.Snapshot(t.Context(), sel); err != nil {
			return err
		}
		if st, _ := rd.BrokerStats("rmq"); st.Selectors != 1 {
			return fmt.Errorf("%d selectors watched, want 1 (the queue)", st.Selectors)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keep, stop := context.WithCancel(t.Context())
	defer stop()
	go func() { // the queue stays asked for
		for keep.Err() == nil {
			_, _ = rd.Snapshot(keep, sel)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	perRefresh(t, rd, 1) // the queue listing only, once the consumer detail expired
}

// TestSeveralVHosts: selectors in two vhosts are served by one unscoped queue list, and the
// same queue name in each vhost stays apart.
func TestSeveralVHosts(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	setup(t, r, "multi-a", map[string]int{"q": 1})
	setup(t, r, "multi-b", map[string]int{"q": 2})
	rd := startReader(t, modes[0].config(r), queue.Options{})
	for vhost, want := range map[string]int64{"multi-a": 1, "multi-b": 2} {
		waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: vhost, Queue: "q"}, vhost, func(s queue.Snapshot, err error) bool {
			return err == nil && s.Ready == want
		})
	}
	if _, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", VHost: "multi-c", Queue: "q"}); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("queue in a vhost that does not exist: got %v, want ErrNotFound", err)
	}
}

// TestUserTags: a user tagged monitoring reads queues and consumers; a user without a
// management tag gets a clear error, not an empty queue.
func TestUserTags(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	setup(t, r, "tags", map[string]int{"q": 2})
	a := r.Admin()
	for _, u := range []struct{ name, tags string }{{"watcher", "monitoring"}, {"plain", ""}} {
		if err := a.AddUser(t.Context(), u.name, "pw-"+u.name, u.tags); err != nil {
			t.Fatal(err)
		}
		if err := a.SetPermissions(t.Context(), "tags", u.name); err != nil {
			t.Fatal(err)
		}
	}
	sel := queue.Selector{Broker: "rmq", VHost: "tags", Queue: "q"}
	cfg := func(user string) queue.BrokerConfig {
		return queue.BrokerConfig{Name: "rmq", URL: r.ManagementURL(), Username: user, Password: "pw-" + user}
	}

	watcher := startReader(t, cfg("watcher"), queue.Options{})
	waitSnapshot(t, watcher, sel, "monitoring user", func(s queue.Snapshot, err error) bool { return err == nil && s.Ready == 2 })
	if _, err := watcher.Consumers(t.Context(), sel); err != nil {
		t.Errorf("consumers as a monitoring user: %v", err)
	}

	plain := startReader(t, cfg("plain"), queue.Options{})
	_, err := plain.Snapshot(t.Context(), sel)
	var he *queue.HTTPError
	if !errors.As(err, &he) || (he.Status != http.StatusUnauthorized && he.Status != http.StatusForbidden) {
		t.Fatalf("user without a management tag: got %v, want an HTTPError 401 or 403", err)
	}
	if !strings.Contains(err.Error(), "monitoring tag") {
		t.Errorf("got %q, want it to name the monitoring tag", err)
	}
}

// Selectors that read depths only are served by one stats-free listing per refresh, whatever
// the page size; one selector that wants the statistics brings the full listing back.
func TestDepthsOnly(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	vhost := fmt.Sprintf("depths-only-%d", time.Now().UnixNano()) // its own, also under -count
	setup(t, r, vhost, map[string]int{"jobs": 5, "a": 0, "b": 0, "c": 0})
	holdMessages(t, r, vhost, "jobs", "worker-1", 2)
	var count recordingTransport
	rd := startReader(t, modes[0].config(r), queue.Options{PageSize: 2, WrapTransport: count.wrap})
	depths := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs", DepthsOnly: true}
	got := waitSnapshot(t, rd, depths, "depths without statistics", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 3 && s.Unacked == 2
	})
	if got.Consumers != 0 || got.RatesKnown || !got.InFlightVisible || got.At.After(got.Fetched) {
		t.Errorf("got %+v, want no consumer count, no rates, in-flight visible, At no later than Fetched", got)
	}
	pattern := queue.Selector{Broker: "rmq", VHost: vhost, Pattern: "^[abc]$", DepthsOnly: true}
	waitSnapshot(t, rd, pattern, "a pattern without statistics", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Queues == 3 && s.Ready == 0
	})
	// Four queues in pages of two, in one request.
	perRefresh(t, rd, 1)

	full := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs"}
	waitSnapshot(t, rd, full, "depths with statistics", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 3 && s.Unacked == 2 && s.Consumers == 1
	})
	// Now paged: two pages per refresh.
	perRefresh(t, rd, 2)
	if got, err := rd.Snapshot(t.Context(), depths); err != nil || got.Ready != 3 || got.Unacked != 2 {
		t.Errorf("depths-only selector beside a full one: %+v, %v", got, err)
	}
}

// perRefresh waits for a refresh that sent want requests, measured between two refresh
// boundaries; a refresh that starts before a reading blurs one measure, so it tries a few.
func perRefresh(t *testing.T, rd *queue.Reader, want int64) {
	t.Helper()
	var got []int64
	for try := 0; try < 5; try++ {
		<-rd.Refreshed("rmq")
		s1, err := rd.BrokerStats("rmq")
		if err != nil {
			t.Fatal(err)
		}
		<-rd.Refreshed("rmq")
		s2, err := rd.BrokerStats("rmq")
		if err != nil {
			t.Fatal(err)
		}
		if s2.Refreshes-s1.Refreshes != 1 {
			continue
		}
		if n := s2.Requests - s1.Requests; n == want {
			return
		} else {
			got = append(got, n)
		}
	}
	t.Fatalf("requests per refresh: got %v, want %d", got, want)
}
