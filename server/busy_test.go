package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// recordedPatches records deletion-cost patches. The patcher against a real API server is
// tested in busy_kube_test.go; here only which pods are patched matters.
type recordedPatches struct {
	mu   sync.Mutex
	pods map[string]string // pod → patch body
}

func (r *recordedPatches) PatchPod(_ context.Context, ns, name string, patch []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pods[ns+"/"+name] = string(patch)
	return nil
}

func (r *recordedPatches) get(pod string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pods[pod]
	return p, ok
}

func (r *recordedPatches) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pods)
}

// TestBusyHoldsScaleDown: through the planner, busy workers mapped from the broker's
// consumers hold the scale-down, and only a Deployment's busy pods get a deletion cost.
// A StatefulSet, which always removes its highest ordinals, is held at the highest busy
// ordinal + 1; an ambiguous mapping (a consumer from no pod of the target) leaves busy
// workers unknown and sets no cost.
func TestBusyHoldsScaleDown(t *testing.T) {
	for _, tc := range []struct {
		name        string
		kind        string
		peer        string  // peer host of the busy consumer
		mpr         string  // messagesPerReplica
		wantBefore  float64 // before the patched costs reach the cluster cache
		wantValue   float64
		wantPatched []string
	}{
		// 2 messages held on pod 3, 8 per worker: the queue needs 1, one worker is busy. Until
		// the busy pod's cost is in the cache, no idle pod is sure to be deleted first: hold.
		{name: "deployment: cost on the busy pod", kind: "Deployment", peer: "10.0.0.3", mpr: "8", wantBefore: 6, wantValue: 1, wantPatched: []string{"w-3"}},
		{name: "statefulset: held up to the busy ordinal", kind: "StatefulSet", peer: "10.0.0.3", mpr: "8", wantValue: 4},
		{name: "statefulset: lowest ordinal busy, free to shrink", kind: "StatefulSet", peer: "10.0.0.0", mpr: "8", wantValue: 1},
		{name: "ambiguous: consumer behind a proxy: one worker kept per unacked message", kind: "Deployment", peer: "172.20.0.9", mpr: "8", wantValue: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			q := (&fixedQueue{
				snap:      queue.Snapshot{Unacked: 2, Consumers: 1, InFlightVisible: true, Queues: 1},
				stats:     queue.Stats{Mode: queue.ModeManagement},
				consumers: []queue.Consumer{{PeerHost: tc.peer, PeerPort: 1, Channel: 1, Unacked: 2}},
			}).at(now)
			var pods []server.WorkerPod
			for i := range 6 {
				pods = append(pods, server.WorkerPod{Name: fmt.Sprintf("w-%d", i), IP: fmt.Sprintf("10.0.0.%d", i), Running: true, Ready: true})
			}
			c := newFakeCluster()
			md := map[string]string{"queue": "jobs", "messagesPerReplica": tc.mpr}
			c.add("ns", "w", server.Workload{Current: 6, Ready: 6, Fit: 10, Kind: tc.kind, Pods: pods}, md)
			rec := &recordedPatches{pods: map[string]string{}}
			srv, err := server.New(server.Options{Queue: q, Brokers: q, Cluster: c, Registerer: prometheus.NewRegistry(),
				Now: func() time.Time { return now }, Pods: rec})
			if err != nil {
				t.Fatal(err)
			}
			srv.Start(t.Context())
			defer srv.Close()
			srv.PlanNow()
			metric := func() float64 {
				t.Helper()
				resp, err := srv.GetMetrics(t.Context(), &pb.GetMetricsRequest{ScaledObjectRef: ref("ns", "w", md)})
				if err != nil {
					t.Fatal(err)
				}
				return resp.MetricValues[0].MetricValueFloat
			}
			want := tc.wantValue
			if tc.wantBefore != 0 {
				want = tc.wantBefore
			}
			if got := metric(); got != want {
				t.Errorf("GetMetrics before the costs are in the cache = %v, want %v", got, want)
			}
			deadline := time.Now().Add(5 * time.Second)
			for rec.count() < len(tc.wantPatched) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // no extra patch may follow
			if tc.wantBefore != 0 {
				// The patches reach the cache, as the informer would deliver them: in new
				// objects (the planner may still be reading the old ones).
				patched := slices.Clone(pods)
				for i := range patched {
					if _, ok := rec.get("ns/" + patched[i].Name); ok {
						c2 := int32(2)
						patched[i].DeletionCost = &c2
					}
				}
				c.set("w", server.Workload{Current: 6, Ready: 6, Fit: 10, Kind: tc.kind, Pods: patched})
				srv.PlanNow()
				if got := metric(); got != tc.wantValue {
					t.Errorf("GetMetrics once the costs are in the cache = %v, want %v", got, tc.wantValue)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.pods) != len(tc.wantPatched) {
				t.Fatalf("patched %v, want %v", rec.pods, tc.wantPatched)
			}
			for _, p := range tc.wantPatched {
				want := `{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"2"}}}`
				if got := rec.pods["ns/"+p]; got != want {
					t.Errorf("patch of %s = %s, want %s", p, got, want)
				}
			}
		})
	}
}

// perRefresh is the broker requests per completed refresh of the env's reader over d. The
// two counters are read a moment apart, so a refresh in flight at either end skews it by up
// to one request in the window.
func perRefresh(t *testing.T, e *env, d time.Duration) float64 {
	t.Helper()
	s0, err := e.reader.BrokerStats("main")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	s1, _ := e.reader.BrokerStats("main")
	if s1.Refreshes == s0.Refreshes {
		t.Fatalf("no refresh in %v", d)
	}
	return float64(s1.Requests-s0.Requests) / float64(s1.Refreshes-s0.Refreshes)
}

// Consumers are read only while a scale-down is pending: otherwise a refresh is the one
// queue listing.
func TestConsumersReadOnlyForScaleDown(t *testing.T) {
	e := newEnv(t, envOptions{})
	q := e.queue(t, "jobs")
	if err := e.broker.Admin().Publish(t.Context(), "/", q, 20); err != nil {
		t.Fatal(err)
	}
	pods := []server.WorkerPod{
		{Name: "w-0", IP: "10.0.0.1", Node: "n", Running: true, Ready: true},
		{Name: "w-1", IP: "10.0.0.2", Node: "n", Running: true, Ready: true},
	}
	md := map[string]string{"queue": q, "stepPods": "100"}
	e.cluster.add("default", "w", server.Workload{Current: 2, Ready: 2, Fit: 10, Pods: pods}, md)
	if v, err := e.metricBecomes(t, ref("default", "w", md), 12, 15*time.Second); v != 12 {
		t.Fatalf("GetMetrics = %v, %v; want 12 (2 + 10 that fit)", v, err)
	}
	// Consumers asked for while the first readings lagged (an empty queue looks like a
	// scale-down) stop being read after 3 refreshes.
	time.Sleep(4 * testRefresh)
	if n := perRefresh(t, e, 10*testRefresh); n < 0.5 || n > 1.5 {
		t.Errorf("%.2f broker requests per refresh while the queue needs more workers, want 1 (the queue listing)", n)
	}

	// The queue drains: a scale-down is pending, and who is busy matters.
	if err := e.broker.Admin().PurgeQueue(t.Context(), "/", q); err != nil {
		t.Fatal(err)
	}
	if v, err := e.metricBecomes(t, ref("default", "w", md), 0, 15*time.Second); err != nil || v != 0 {
		t.Fatalf("GetMetrics = %v, %v after the queue drained (no consumer holds anything), want 0", v, err)
	}
	if n := perRefresh(t, e, 10*testRefresh); n < 2.5 || n > 3.5 {
		t.Errorf("%.2f broker requests per refresh while scaling down, want 3 (queues, consumers, channels)", n)
	}
}

// pendingConsumers answers its first Consumers call as the reader does for a queue whose
// consumers nobody asked for yet (read from the next refresh on).
type pendingConsumers struct {
	*fixedQueue
	calls atomic.Int32
}

func (q *pendingConsumers) Consumers(ctx context.Context, sel queue.Selector) ([]queue.Consumer, error) {
	if q.calls.Add(1) == 1 {
		return nil, context.Canceled
	}
	return q.fixedQueue.Consumers(ctx, sel)
}

// Until the consumers asked for are read, a scale-down holds rather than go ahead blind.
func TestScaleDownWaitsForConsumers(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// One message in flight on w-1: the queue needs 1 of the 2 workers.
	q := &pendingConsumers{fixedQueue: (&fixedQueue{
		snap:      queue.Snapshot{Unacked: 1, Consumers: 1, InFlightVisible: true, Queues: 1},
		stats:     queue.Stats{Mode: queue.ModeManagement},
		consumers: []queue.Consumer{{PeerHost: "10.0.0.2", PeerPort: 1, Channel: 1, Unacked: 1}},
	}).at(now)}
	pods := []server.WorkerPod{{Name: "w-0", IP: "10.0.0.1", Running: true, Ready: true}, {Name: "w-1", IP: "10.0.0.2", Running: true, Ready: true}}
	c := newFakeCluster()
	md := map[string]string{"queue": "jobs"}
	c.add("ns", "w", server.Workload{Current: 2, Ready: 2, Fit: 10, Pods: pods}, md)
	// Not started: the passes are the test's own.
	srv, err := server.New(server.Options{Queue: q, Brokers: q, Cluster: c, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i, want := range []float64{2, 1} {
		srv.PlanNow()
		resp, err := srv.GetMetrics(t.Context(), &pb.GetMetricsRequest{ScaledObjectRef: ref("ns", "w", md)})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.MetricValues[0].MetricValueFloat; got != want {
			t.Errorf("pass %d: GetMetrics = %v, want %v", i+1, got, want)
		}
	}
}
