package server

import (
	"context"
	"errors"
	"time"

	"github.com/headroom-autoscaler/headroom/queue"
)

// QueueReader is what the server needs from the broker cache (queue.Reader).
type QueueReader interface {
	// Snapshot returns the selected queues as of the broker's last refresh. With a context
	// that is already done it never waits: a selector not read yet returns the context's
	// error (and is read at the next refresh).
	Snapshot(ctx context.Context, sel queue.Selector) (queue.Snapshot, error)
	// Refreshed returns a channel closed when the broker's next refresh completes.
	Refreshed(broker string) <-chan struct{}
}

// BrokerMonitor reports on the brokers for metrics and readiness (queue.Reader).
type BrokerMonitor interface {
	Brokers() []string
	BrokerStats(name string) (queue.Stats, error)
}

var (
	_ QueueReader   = (*queue.Reader)(nil)
	_ BrokerMonitor = (*queue.Reader)(nil)
)

// ErrNotFound marks a ScaledObject or scale target the cluster caches do not hold.
var ErrNotFound = errors.New("not found")

// ErrNotSynced marks a cluster cache that has not finished its first list.
var ErrNotSynced = errors.New("cluster caches not synced yet")

// TargetRef names a scale target. APIVersion "" means apps/v1.
type TargetRef struct {
	Namespace, Kind, Name string
	APIVersion            string
}

// ScaledObject is a ScaledObject that points at this scaler, as the cluster caches hold it.
type ScaledObject struct {
	Namespace, Name string
	UID             string
	Target          TargetRef
	// MaxReplicas is spec.maxReplicaCount; 0 when unset (KEDA's default, 100, applies).
	MaxReplicas int32
	// Triggers holds the metadata of each of its triggers that point at this scaler.
	Triggers []map[string]string
	// Warnings are what keeps the HPA from running the answer as it is (HPAFindings).
	Warnings []Finding
}

// Workload is the state of a scale target and how many more of its workers fit.
type Workload struct {
	Current int32 // spec replicas
	Ready   int32
	Pending int32 // Pending-unschedulable pods
	// Fit is how many more workers of the requested footprint the cluster can place, on the
	// nodes the pod template may use, keeping the reserve free on each node.
	Fit int32
	// Footprint is the size of one worker that Fit was computed for.
	Footprint Resources
	// Kind is the target's kind (Deployment, StatefulSet, ...).
	Kind string
	// Pods are the target's pods, sorted by name; nil when the reader does not list them
	// (then busy workers are unknown).
	Pods []WorkerPod
}

// WorkerPod is what the busy-aware scale-down reads of one pod of a target.
type WorkerPod struct {
	Name, IP, Node string
	Ready, Running bool
	// DeletionCost is the pod's controller.kubernetes.io/pod-deletion-cost, nil when unset.
	DeletionCost *int32
	// Created is when the pod was created; Terminating says it is being deleted, Finished
	// that it has stopped for good (Succeeded or Failed).
	Created               time.Time
	Terminating, Finished bool
}

// ScaledObjectLister lists the ScaledObjects that point at this scaler.
type ScaledObjectLister interface {
	// ScaledObjects lists them all (ErrNotSynced before the first list). The list may be
	// shared with other callers: read it, do not modify it.
	ScaledObjects() ([]ScaledObject, error)
	// ScaledObject returns one (ErrNotFound, ErrNotSynced).
	ScaledObject(namespace, name string) (ScaledObject, error)
}

// WorkloadReader reads scale targets and the room for them from the cluster caches.
type WorkloadReader interface {
	Workload(ref TargetRef, fp Footprint, reserve Resources) (Workload, error)
}

// ClusterReader is what the server needs from the cluster caches. Its methods read caches
// only: they never call the API server.
type ClusterReader interface {
	ScaledObjectLister
	WorkloadReader
}

// Syncer reports whether the cluster caches are synced (for /readyz and a metric).
type Syncer interface {
	Synced() bool
}

// NodeFree is one node's free room, for metrics.
type NodeFree struct {
	Node     string
	MilliCPU int64
	Memory   int64
	Pods     int64
}

// NodeLister lists each node's free room (optional: the node metric is exported only when
// the cluster reader implements it).
type NodeLister interface {
	NodesFree() []NodeFree
}

// Versioned is implemented by cluster readers whose state carries a version that changes
// whenever anything the answers depend on changes: the planner then also runs on cluster
// changes (checked every ClusterPoll), not only after broker refreshes.
type Versioned interface {
	Version() uint64
}

// ClusterPoll is how often the planner compares the cluster's Version.
const ClusterPoll = 250 * time.Millisecond
