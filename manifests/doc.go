// Package manifests holds the Kubernetes deployment assets of headroom and renders them.
//
// The directories are plain kustomize trees, applied with `kubectl apply -k`:
//
//	base/                     the scaler: Deployment (2 replicas), Service, RBAC, PDB, broker Secret template
//	components/networkpolicy  optional: only KEDA's operator reaches the gRPC port
//	prometheus/               ServiceMonitor and PrometheusRule; headroom.rules.yml is the same alerts as a plain file
//	grafana/                  headroom.json, and the ConfigMap for Grafana's dashboard sidecar;
//	                          snapshot.png is the dashboard drawn from a live run (see below)
//	overlays/production       base + prometheus + grafana + networkpolicy
//	overlays/tls              production with mutual TLS between KEDA and the scaler
//	examples/                 two workload classes (loader, worker) with their ScaledObjects
//	examples-tls/             the examples authenticated to overlays/tls
//
// Main entry point: Render builds one of those directories from the embedded copy with
// kustomize's own library. The tests render every directory, check what matters to the
// scaler (RBAC, probes, HPA behavior, KEDA's TLS parameters), apply the result with
// `kubectl apply --dry-run=server` against a real API server with KEDA's and the Prometheus
// Operator's CRDs, type-check the dashboard against Grafana's TypeScript schema, and run
// every dashboard and alert query on a real Prometheus scraping a running `scaler serve`.
// That last test draws the panels over its run into grafana/snapshot.png when given
// -update-snapshot:
//
//	go test ./manifests -run TestDashboardAndAlertsOnLiveScaler -args -update-snapshot
//
// Invariant: prometheus/prometheusrule.yaml carries exactly the groups of
// prometheus/headroom.rules.yml, and the ConfigMap in grafana/ exactly headroom.json.
package manifests
