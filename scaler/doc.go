// Package scaler decides how many workers a queue-driven workload should run.
//
// Decide is the whole decision: a pure function of a Policy, an Input (queue state, target
// state, how many more workers fit) and the current time. It does no I/O, reads no clock and
// keeps no state between calls, so the gRPC server and the simulator get the same answer from
// the same inputs, and any replica of the server answers like any other.
//
// Invariants, checked by property and fuzz tests:
//   - 0 ≤ Replicas ≤ MaxReplicas;
//   - when scaling up, Replicas − Current ≤ max(Fit, 0): never more new pods than fit;
//   - never zero while messages are ready or unacknowledged, and never zero because a read
//     failed (unless nothing runs and nothing fits);
//   - Replicas is monotone (non-decreasing) in queue depth, all else equal.
//
// Share splits free room among competing ScaledObjects by weight. The HPA model (HPA,
// HPAState) reproduces what the Kubernetes horizontal pod autoscaler does with the value the
// server returns, so the simulator and the tests can show when the final replica count equals
// the decision and when it cannot.
//
// This package imports the standard library only.
package scaler
