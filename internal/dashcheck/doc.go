// Package dashcheck validates the Grafana dashboard and the Prometheus rules in manifests/
// without Grafana: it reads the dashboard's structure, collects every PromQL expression
// (panel targets, variable queries, alert rules), parses them with Prometheus's own parser,
// lists the metrics each one reads, runs them against a real Prometheus, and draws the
// panels' data as a static image.
//
// Main entry points: LoadDashboard and LoadRules collect Queries; Parse parses them (through
// the dashcheck command in internal/tools/dashcheck, a separate module because Prometheus's
// module requires newer Kubernetes libraries than this one pins); Client queries a Prometheus
// server; Snapshot renders a dashboard's panels to PNG.
//
// Invariants: a Query always carries where it came from (panel title and refId, variable or
// alert name), so every failure names the panel or rule at fault; Expand turns Grafana's
// template variables into values that select everything, so an expanded expression is plain
// PromQL.
package dashcheck
