// Package server is the KEDA external scaler: the ExternalScaler gRPC service, answered from
// the queue snapshot cache (package queue) and the cluster caches (package capacity) through
// scaler.Decide.
//
// The main entry point is New with Options (a QueueReader, a ClusterReader, a Prometheus
// registerer), then Start, Register on a grpc.Server, and Close.
//
// How an answer is made: a planner goroutine runs after every broker refresh, on cluster
// changes and at least once per refresh interval. It lists the ScaledObjects that point at
// this scaler (from the API server, so every replica of the scaler sees the same set), parses
// each trigger's metadata (once per distinct map), reads the caches, shares the cluster's free
// room among the targets that want more (scaler.Share, by weight) and decides. RPCs read the
// planner's latest plan: a map lookup. A trigger the planner has not seen yet is decided on
// demand from the caches, without a share.
//
// Sharing: each target that wants more workers than it runs (its decision with unlimited
// room, so already bounded by its queue, step and maximum) claims a fraction of the cluster's
// free room: wanted pods ÷ the pods of its own footprint that fit, in 2^20ths. scaler.Share
// splits the whole (2^20 units) among the claims by weight, and each share is converted back
// into pods of the claimant's footprint. A target twice as large thus pays twice as much per
// pod. All served targets are treated as one pool of room; bin-packing leftovers can make the
// sum slightly optimistic, and the Pending-unschedulable pods that result stop the next step.
//
// When the latest step began (LastScaleUp, for stepTimeout) comes from the cluster: the
// creation time of the target's youngest pod that is not Ready, so every replica of the
// scaler agrees on it and a restart does not forget it. The planner adds what it saw itself,
// the spec replicas rising, for the moment before the step's pods exist.
//
// What the planner remembers (because neither the broker nor the cluster says it): when each
// trigger's queue was first seen empty in the current run of empty readings (Queue.EmptySince,
// for idleAfter). It is per scaler replica; after a restart it starts unknown, which holds an
// AMQP-read workload for one more idleAfter (never a scale to zero too early).
//
// Busy-aware scale-down (busy.go, deletioncost.go): with the management API, each pass maps
// the queue's consumers to the target's pods by the consumer's peer host = the pod's IP, and
// counts the pods whose channels hold unacknowledged messages. That count is the decision's
// Busy (for a StatefulSet, which always removes its highest ordinals, the highest busy
// ordinal + 1). The mapping is refused, and busy workers are unknown, when two of the target's
// pods share an IP (host networking) or a consumer's peer is none of them (a proxy, NAT, or
// another workload on the queue); AMQP readings cannot see in-flight work at all. Then no
// cost is set and costs left from earlier readings are removed. When known, a Deployment's
// busy pods carry controller.kubernetes.io/pod-deletion-cost = the messages they hold and
// idle pods none, refreshed on every pass (not only when a scale-down is decided: the HPA
// and the ReplicaSet controller act on their own clocks). Only changed costs are patched, by
// one goroutine behind a client-side token bucket (Options.PatchQPS, PatchBurst); the
// planner hands it the wanted state and never waits.
//
// Explanations: every decision's sentence (scaler.Decision.Explain, with what fits in the
// cluster when a share of the room limited it) goes to the debug log when the decision
// changes and to a Kubernetes Event when its limiting factor changes; Decisions and
// DecisionsHandler (the /decisions page) show the latest plan, one line per trigger, with
// the error KEDA gets for a trigger without a decision and what in each ScaledObject keeps
// the HPA from running the answer as it is (HPAFindings, also behind `scaler check`, with
// CheckScaledObject).
//
// Invariants:
//   - A call never waits on the broker or the API server, except the first call for a queue
//     nobody asked about yet, which waits (at most Options.FirstReadWait) for its first read.
//   - A failed, missing or stale reading (older than Options.MaxSnapshotAge) is an
//     Unavailable error, never a value: KEDA's fallback then applies. Bad metadata is
//     InvalidArgument naming the key and the value.
//   - Metrics about state owned elsewhere are computed at scrape time from the caches.
//   - Every goroutine is owned by the Server: Close stops and waits for them.
package server
