// Package externalscaler is KEDA's external-scaler gRPC contract: externalscaler.proto, with
// the same protobuf package, service, messages and field numbers as KEDA's own copy, and the Go
// code generated from it by `make proto` (protoc-gen-go and protoc-gen-go-grpc at the versions
// pinned in the Makefile). The generated files are committed; CI regenerates them and fails on
// any difference.
//
// A binary must not link both this package and KEDA's generated externalscaler package: they
// register the same protobuf names and the protobuf runtime panics on the conflict. KEDA's own
// client therefore runs from the separate conformance module, as its own process.
package externalscaler
