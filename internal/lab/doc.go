// Package lab starts real components on this machine for tests, benchmarks and the demo:
// a RabbitMQ broker, a Kubernetes control plane with KWOK nodes, KEDA and Prometheus, each
// bound to 127.0.0.1, each with its own state directory, each stopped by the PID it was
// started with.
//
// Binaries that Debian does not package are built from the Go module proxy into a cache
// directory outside the repository (see CacheDir) and reused by version.
//
// Nothing here imports "testing": tests reach it through package labtest, which adds skip
// rules and cleanup; the demo program calls it directly.
package lab
