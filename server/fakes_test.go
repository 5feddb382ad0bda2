package server_test

import (
	"context"
	"google.golang.org/grpc"
	"sync"
	"time"

	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// fakeCluster stands in for the cluster caches in the tests of the gRPC layer: the behaviour
// under test (metadata, errors, shares, streams) does not depend on how the caches are
// filled, and starting a control plane per case would cost seconds each. The adapter over the
// real caches (server.Capacity) is tested against the real control plane in kube_test.go.
type fakeCluster struct {
	mu        sync.Mutex
	sos       []server.ScaledObject
	workloads map[string]server.Workload // by target name
	synced    bool
}

var (
	_ server.ClusterReader = (*fakeCluster)(nil)
	_ server.Syncer        = (*fakeCluster)(nil)
	_ server.NodeLister    = (*fakeCluster)(nil)
)

func newFakeCluster() *fakeCluster {
	return &fakeCluster{workloads: map[string]server.Workload{}, synced: true}
}

// add registers a ScaledObject whose target is a Deployment of the same name.
func (f *fakeCluster) add(ns, name string, w server.Workload, triggers ...map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sos = append(f.sos, server.ScaledObject{
		Namespace: ns, Name: name, UID: "uid-" + name,
		Target:   server.TargetRef{Namespace: ns, Kind: "Deployment", Name: name},
		Triggers: triggers,
	})
	f.workloads[name] = w
}

// remove drops every ScaledObject of namespace ns.
func (f *fakeCluster) remove(ns string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.sos[:0]
	for _, so := range f.sos {
		if so.Namespace != ns {
			kept = append(kept, so)
		}
	}
	f.sos = kept
}

func (f *fakeCluster) set(name string, w server.Workload) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.workloads[name] = w
}

func (f *fakeCluster) Synced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.synced
}

func (f *fakeCluster) ScaledObjects() ([]server.ScaledObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.synced {
		return nil, server.ErrNotSynced
	}
	return append([]server.ScaledObject(nil), f.sos...), nil
}

func (f *fakeCluster) ScaledObject(ns, name string) (server.ScaledObject, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, so := range f.sos {
		if so.Namespace == ns && so.Name == name {
			return so, nil
		}
	}
	return server.ScaledObject{}, server.ErrNotFound
}

func (f *fakeCluster) Workload(ref server.TargetRef, _ server.Footprint, _ server.Resources) (server.Workload, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.workloads[ref.Name]
	if !ok {
		return server.Workload{}, server.ErrNotFound
	}
	return w, nil
}

func (f *fakeCluster) NodesFree() []server.NodeFree {
	return []server.NodeFree{{Node: "node-1", MilliCPU: 1500, Memory: 2 << 30, Pods: 100}}
}

// fixedQueue serves fixed snapshots and statistics, for the golden exposition file, whose
// numbers must not depend on a real broker's timing or request counts.
type fixedQueue struct {
	snap      queue.Snapshot
	stats     queue.Stats
	consumers []queue.Consumer
	// live makes the snapshot and the broker's last refresh read as taken at the moment they
	// are asked for: a broker refreshed continuously, for benchmarks that outlast the
	// staleness bound.
	live bool
}

func (q *fixedQueue) Consumers(context.Context, queue.Selector) ([]queue.Consumer, error) {
	return q.consumers, nil
}

func (q *fixedQueue) Snapshot(context.Context, queue.Selector) (queue.Snapshot, error) {
	snap := q.snap
	if q.live {
		now := time.Now()
		snap.At, snap.Fetched = now, now
	}
	return snap, nil
}
func (q *fixedQueue) Refreshed(string) <-chan struct{} { return make(chan struct{}) }
func (q *fixedQueue) Brokers() []string                { return []string{"main"} }
func (q *fixedQueue) BrokerStats(string) (queue.Stats, error) {
	stats := q.stats
	if q.live {
		stats.LastRefresh = time.Now()
	}
	return stats, nil
}
func (q *fixedQueue) at(t time.Time) *fixedQueue {
	q.snap.At, q.snap.Fetched, q.stats.LastRefresh = t, t, t
	return q
}

var grpcInfo = grpc.UnaryServerInfo{FullMethod: "/externalscaler.ExternalScaler/GetMetrics"}
