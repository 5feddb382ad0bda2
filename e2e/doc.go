// Package e2e runs the whole chain on one machine, with nothing mocked: messages in a real
// RabbitMQ, `scaler serve` (its own processes, behind a Service-like address), the real KEDA
// operator and metrics adapter, the real HPA in kube-controller-manager, a Deployment placed
// by the real kube-scheduler on KWOK nodes with finite CPU and memory, and emulated workers
// (lab.Workers) that consume from the pods' own addresses.
//
// StartStack starts it; the demo program (internal/cmd/demo) and the conformance module
// (through the demo program's `stack` command) use the same code. The tests in this package
// are the end-to-end suite (`make e2e`): each scenario asserts on what the cluster did, read
// from the API server, never on logs. They skip under -short and, like every real-component
// test, when a component is missing unless HEADROOM_REAL=1.
//
// Invariants: every process is started through package lab and stopped by its PID; every
// listener is on 127.0.0.0/8.
package e2e
