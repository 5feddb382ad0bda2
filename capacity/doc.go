// Package capacity answers, from the Kubernetes API, how many more workers of a given
// footprint the cluster can place right now and what state a scale target is in.
//
// Two layers:
//
//   - A pure fit computation over plain values (Node, Footprint, Constraints, Fit), with no
//     client-go types, shared with the simulator. Per node, free room is
//     allocatable − max(requested, used) − reserve, and the number of pods that fit is
//     min(⌊freeCPU/cpu⌋, ⌊freeMem/mem⌋, freePods), summed over the nodes the workload may use
//     (schedulable, matching its node selector and required node affinity, tolerating every
//     NoSchedule and NoExecute taint). The real kube-scheduler is the reference: the package
//     tests create Fit+1 pods on a real control plane and expect exactly Fit to be placed.
//
//   - Cluster, which keeps that state from informers of one shared factory (nodes, pods,
//     Deployments, StatefulSets) plus a dynamic informer for KEDA ScaledObjects. Entry points:
//     New, Start, WaitForSync, then Fit, Nodes, Target and ScaledObjectsFor.
//
// Invariants:
//
//   - Objects are stripped before they enter the caches: pods become a small internal record
//     (name, labels, node, phase, IP, readiness, unschedulable flag, deletion cost, requests
//     computed once); nodes keep labels, taints, cordon, allocatable and the Ready condition;
//     workloads keep replicas, selector and the template's resources and placement rules.
//     Managed fields and unused annotations are dropped everywhere.
//   - Per-node requests and pod counts are updated incrementally by pod events, so Fit never
//     walks the pods. Terminated pods (Succeeded, Failed) hold nothing, as in the scheduler.
//   - Live usage from metrics.k8s.io is optional; when it cannot be read, usage is unknown and
//     only requests count (it is never left stale).
//   - Until every cache has synced, Synced is false and answers must not be served.
//   - Cached objects are never modified after they enter the cache.
package capacity
