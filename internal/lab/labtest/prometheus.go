package labtest

import (
	"testing"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// Prometheus starts a Prometheus server for t (skipping under -short or when the prometheus
// package is not installed, see Check) and stops it when t ends.
func Prometheus(t testing.TB, opts lab.PrometheusOptions) *lab.Prometheus {
	t.Helper()
	Short(t, "Prometheus server")
	p, err := lab.StartPrometheus(t.Context(), opts)
	Check(t, "Prometheus server", err)
	t.Cleanup(p.Stop)
	return p
}

// Promtool returns the path of promtool, skipping t (or failing it under HEADROOM_REAL=1)
// when it is not installed.
func Promtool(t testing.TB) string {
	t.Helper()
	p, err := lab.Promtool()
	Check(t, "promtool", err)
	return p
}
