// Package conformance drives a running `scaler serve` through KEDA's own external-scaler
// client (github.com/kedacore/keda/v2/pkg/scalers), the code KEDA's operator runs, against a
// real RabbitMQ and a real Kubernetes control plane, and checks the values KEDA would hand to
// the HPA. It also measures KEDA's own RabbitMQ scaler against the scaler on the same broker.
//
// This is a separate Go module on purpose: KEDA's generated protobuf code and ours declare the
// same protobuf names, and the protobuf runtime refuses a binary that links both. So nothing
// of the main module is linked here. TestMain builds the main module's demo program and runs
// `demo stack` as its own process: it starts the broker, the control plane and the scaler
// (built from ../cmd/scaler) through the main module's harness and writes their endpoints as
// JSON; the tests reach everything over loopback.
//
// Run with `cd conformance && go test ./...`. Under -short every test skips; without the
// real components they skip too, unless HEADROOM_REAL=1 (then they fail).
package conformance
