package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	"github.com/headroom-autoscaler/headroom/queue"
)

// TestDepthsFromMetrics reads depths-only selectors from the broker's Prometheus endpoint
// (the real rabbitmq_prometheus plugin): the same depths as the listing, one request per
// refresh for every vhost, label escaping on a queue name with a quote and a backslash, an
// absent queue reported as unknown rather than as zero or missing, and the management API
// again as soon as a selector wants the statistics.
func TestDepthsFromMetrics(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	stamp := time.Now().UnixNano()
	vhost, other := fmt.Sprintf("metrics-%d", stamp), fmt.Sprintf("metrics-other-%d", stamp)
	odd := `odd "name" \ here`
	setup(t, r, vhost, map[string]int{"jobs": 5, "a": 0, "b": 1, "c": 0, odd: 4})
	setup(t, r, other, map[string]int{"jobs": 7})
	holdMessages(t, r, vhost, "jobs", "worker-1", 2)

	var seen recordingTransport
	cfg := modes[0].config(r)
	cfg.MetricsURLs = []string{r.PrometheusURL()}
	rd := startReader(t, cfg, queue.Options{WrapTransport: seen.wrap})

	depths := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs", DepthsOnly: true}
	got := waitSnapshot(t, rd, depths, "depths from the metrics endpoint", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 3 && s.Unacked == 2
	})
	if got.RatesKnown || !got.InFlightVisible || got.At.After(got.Fetched) {
		t.Errorf("got %+v, want no rates, in-flight visible, At no later than Fetched", got)
	}
	waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: vhost, Pattern: "^[abc]$", DepthsOnly: true}, "a pattern", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Queues == 3 && s.Ready == 1
	})
	waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: vhost, Queue: odd, DepthsOnly: true}, "a queue name that needs escaping", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 4
	})
	waitSnapshot(t, rd, queue.Selector{Broker: "rmq", VHost: other, Queue: "jobs", DepthsOnly: true}, "a second vhost", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 7
	})

	absent := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "nope", DepthsOnly: true}
	_, err := rd.Snapshot(t.Context(), absent)
	if !errors.Is(err, queue.ErrStatsPending) || !strings.Contains(err.Error(), "no such queue") {
		t.Errorf("absent queue: got %v, want ErrStatsPending naming the possibilities", err)
	}

	// Both vhosts in one request, and nothing from the management API.
	perRefresh(t, rd, 1)
	counts := seen.counts()
	if counts["/api/queues"] != 0 || counts["/metrics/detailed"] == 0 {
		t.Errorf("requests by path %v, want /metrics/detailed only", counts)
	}
	seen.mu.Lock()
	if q := seen.query["/metrics/detailed"]; len(q) != 2 {
		t.Errorf("vhost parameters %q, want both vhosts", q)
	}
	seen.mu.Unlock()

	// A selector that wants the statistics brings the listing back for its refreshes.
	full := queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs"}
	waitSnapshot(t, rd, full, "depths with statistics", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 3 && s.Consumers == 1
	})
	if seen.counts()["/api/queues"] == 0 {
		t.Errorf("requests by path %v, want the management listing for statistics", seen.counts())
	}
}

// TestMetricsEndpointDown: an unreachable Prometheus endpoint fails the refresh with an
// error naming the endpoint, never a reading of zero.
func TestMetricsEndpointDown(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	vhost := fmt.Sprintf("metrics-down-%d", time.Now().UnixNano())
	setup(t, r, vhost, map[string]int{"jobs": 2})
	port, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := modes[0].config(r)
	cfg.MetricsURLs = []string{fmt.Sprintf("http://127.0.0.1:%d", port)}
	rd := startReader(t, cfg, queue.Options{})
	_, err = rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs", DepthsOnly: true})
	if err == nil || !strings.Contains(err.Error(), "/metrics/detailed") {
		t.Fatalf("got %v, want an error naming /metrics/detailed", err)
	}
}

// TestMetricsURLNotTheEndpoint: a metrics URL that is not the Prometheus plugin's (here the
// management API's port, an easy mistake: it answers 406 to a request for the text format)
// fails the refresh with an error that says what the URL must be.
func TestMetricsURLNotTheEndpoint(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	vhost := fmt.Sprintf("metrics-wrong-%d", time.Now().UnixNano())
	setup(t, r, vhost, map[string]int{"jobs": 2})
	cfg := modes[0].config(r)
	cfg.MetricsURLs = []string{r.ManagementURL()}
	rd := startReader(t, cfg, queue.Options{})
	_, err := rd.Snapshot(t.Context(), queue.Selector{Broker: "rmq", VHost: vhost, Queue: "jobs", DepthsOnly: true})
	var he *queue.HTTPError
	if !errors.As(err, &he) || he.Path != "/metrics/detailed" || !strings.Contains(err.Error(), "rabbitmq_prometheus plugin's endpoint") {
		t.Fatalf("got %v, want an HTTP error naming the plugin's endpoint", err)
	}
}

// TestMetricsBodyTooLarge: an answer beyond the bound fails the refresh rather than leaving
// out, unseen, the queues past the cut (the bound lowered to 1 KiB; the real answer for this
// broker is larger).
func TestMetricsBodyTooLarge(t *testing.T) {
	r := labtest.SharedRabbitMQ(t)
	vhost := fmt.Sprintf("metrics-large-%d", time.Now().UnixNano())
	queues := map[string]int{}
	for i := 0; i < 20; i++ {
		queues[fmt.Sprintf("q%02d", i)] = 0
	}
	setup(t, r, vhost, queues)
	defer queue.SetMaxMetricsBody(1 << 10)()
	cfg := modes[0].config(r)
	cfg.MetricsURLs = []string{r.PrometheusURL()}
	rd, err := queue.NewReader([]queue.BrokerConfig{cfg}, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rd.Watch(queue.Selector{Broker: "rmq", VHost: vhost, Queue: "q00", DepthsOnly: true})
	err = lab.WaitFor(t.Context(), "a refresh that reads the answer", 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		if err := rd.RefreshOnce(ctx, "rmq"); err == nil || !strings.Contains(err.Error(), "larger than") {
			return fmt.Errorf("refresh: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMetricsOfACluster: on a real two-node cluster, each node's Prometheus endpoint
// reports only the queues it hosts, so the metrics of every node are read (one request
// each per refresh); a queue whose node is not listed is unknown, never zero; and with one
// node down the other node's queues still read while the down node's are unknown, the
// message naming the endpoint not read.
func TestMetricsOfACluster(t *testing.T) {
	a := labtest.RabbitMQ(t)
	b, err := lab.StartRabbitMQ(t.Context(), lab.RabbitMQOptions{Join: a})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before a's, which owns the epmd both use
		if t.Failed() {
			t.Logf("second node's log (end):\n%s", b.LogTail(4000))
		}
		_ = b.Stop()
	})
	admin := a.Admin()
	for q, n := range map[string]string{"on-a": a.Node(), "on-b": b.Node()} {
		if err := admin.DeclareQueueOn(t.Context(), "/", q, n); err != nil {
			t.Fatalf("declare %s on %s: %v", q, n, err)
		}
	}
	if err := admin.Publish(t.Context(), "/", "on-a", 2); err != nil {
		t.Fatal(err)
	}
	if err := admin.Publish(t.Context(), "/", "on-b", 3); err != nil {
		t.Fatal(err)
	}
	onA := queue.Selector{Broker: "rmq", VHost: "/", Queue: "on-a", DepthsOnly: true}
	onB := queue.Selector{Broker: "rmq", VHost: "/", Queue: "on-b", DepthsOnly: true}
	both := queue.Selector{Broker: "rmq", VHost: "/", Pattern: "^on-", DepthsOnly: true}

	// One node's endpoint: the other node's queue is not there (below).
	cfg := modes[0].config(a)
	cfg.MetricsURLs = []string{a.PrometheusURL()}
	one := startReader(t, cfg, queue.Options{})
	waitSnapshot(t, one, onA, "the first node's queue from its endpoint", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 2
	})

	// Every node's endpoint: both queues, one request per node and refresh.
	cfg.MetricsURLs = []string{a.PrometheusURL(), b.PrometheusURL()}
	var seen recordingTransport
	rd := startReader(t, cfg, queue.Options{WrapTransport: seen.wrap})
	waitSnapshot(t, rd, onB, "the second node's queue", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Ready == 3
	})
	waitSnapshot(t, rd, both, "a pattern over both nodes", func(s queue.Snapshot, err error) bool {
		return err == nil && s.Queues == 2 && s.Ready == 5
	})
	// The queue has emitted its statistics (on its node), and the first node's endpoint
	// still does not have it.
	<-one.Refreshed("rmq")
	_, err = one.Snapshot(t.Context(), onB)
	if !errors.Is(err, queue.ErrStatsPending) || !strings.Contains(err.Error(), "metrics url not given") {
		t.Errorf("the second node's queue, its endpoint not given: got %v, want ErrStatsPending naming the missing url", err)
	}
	perRefresh(t, rd, 2)
	if c := seen.counts(); c["/api/queues"] != 0 {
		t.Errorf("requests by path %v, want /metrics/detailed only", c)
	}

	// The second node down: its queue unknown, the first's still read, the refresh counted
	// as partial, not failed.
	b.Kill()
	waitSnapshot(t, rd, onB, "the down node's queue unknown", func(s queue.Snapshot, err error) bool {
		return errors.Is(err, queue.ErrStatsPending) && strings.Contains(err.Error(), "1 of 2 metrics endpoints not read") &&
			strings.Contains(err.Error(), b.PrometheusURL())
	})
	if s, err := rd.Snapshot(t.Context(), onA); err != nil || s.Ready != 2 {
		t.Errorf("the first node's queue with the second down: got %+v, %v; want 2 ready", s, err)
	}
	st, err := rd.BrokerStats("rmq")
	if err != nil {
		t.Fatal(err)
	}
	if st.Partial == 0 || st.LastError != nil {
		t.Errorf("stats %+v: want partial refreshes counted and no refresh error", st)
	}

	// No node answers: the refresh fails, naming both endpoints.
	cfg.MetricsURLs = []string{b.PrometheusURL(), b.ManagementURL()}
	none := startReader(t, cfg, queue.Options{})
	_, err = none.Snapshot(t.Context(), onA)
	if err == nil || errors.Is(err, queue.ErrStatsPending) || !strings.Contains(err.Error(), b.PrometheusURL()) || !strings.Contains(err.Error(), b.ManagementURL()) {
		t.Errorf("no endpoint answering: got %v, want a failed refresh naming both", err)
	}
}
