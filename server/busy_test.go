package server_test

import (
	"context"
	"fmt"
	"sync"
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
				// The patches reach the cache, as the informer would deliver them.
				for i := range pods {
					if _, ok := rec.get("ns/" + pods[i].Name); ok {
						c2 := int32(2)
						pods[i].DeletionCost = &c2
					}
				}
				c.set("w", server.Workload{Current: 6, Ready: 6, Fit: 10, Kind: tc.kind, Pods: pods})
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
