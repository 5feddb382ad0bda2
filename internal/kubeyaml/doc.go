// Package kubeyaml reads Kubernetes objects from manifests: a stream of YAML or JSON
// documents, as kubectl takes them. The main entry point is Decode.
//
// Invariants: whole numbers come out as int64, as in the objects the API server hands out
// (so unstructured's Nested* accessors read them); empty documents are skipped; the items of
// a List are objects of their own; an error names the document it is in, counted from 1.
package kubeyaml
