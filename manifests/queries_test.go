package manifests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/headroom-autoscaler/headroom/internal/dashcheck"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	"github.com/headroom-autoscaler/headroom/server"
)

// allQueries is every PromQL expression shipped: dashboard panels and variables, and alerts.
func allQueries(t *testing.T) []dashcheck.Query {
	t.Helper()
	return append(loadDashboard(t).Queries(), loadRules(t).Queries()...)
}

// parse runs Prometheus's parser over qs and fails on any parse error.
func parse(t *testing.T, qs []dashcheck.Query) []dashcheck.Parsed {
	t.Helper()
	labtest.Short(t, "PromQL parser (builds internal/tools/dashcheck)")
	ps, err := dashcheck.Parse(t.Context(), qs)
	if errors.Is(err, lab.ErrUnavailable) {
		labtest.Check(t, "PromQL parser", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Err != "" {
			t.Errorf("%s: %s\n%s", p.Source, p.Err, p.Expr)
		}
	}
	return ps
}

// exportedOffline is what the scaler exports as far as the source tree tells: the sample
// names of the server's golden exposition and the families of server.MetricNames. A family
// that the golden file does not show (a histogram no call has touched yet) also allows its
// _bucket, _count and _sum series; the test against a live scrape is exact.
func exportedOffline(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	golden, _ := filepath.Glob(filepath.Join("..", "server", "testdata", "*.golden"))
	proms, _ := filepath.Glob(filepath.Join("..", "server", "testdata", "*.prom"))
	for _, f := range append(golden, proms...) {
		file, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dashcheck.ExpositionNames(file)
		file.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for n := range got {
			names[n] = true
		}
	}
	for _, f := range server.MetricNames {
		if !names[f] {
			for _, s := range []string{"_bucket", "_count", "_sum"} {
				names[f+s] = true
			}
		}
		names[f] = true
	}
	return names
}

func TestQueriesParse(t *testing.T) {
	qs := allQueries(t)
	if len(qs) < 20 {
		t.Errorf("only %d queries found in the dashboard and the rules", len(qs))
	}
	parse(t, qs)
}

// TestQueriesNameOnlyExportedMetrics fails when a panel or an alert reads a metric the scaler
// does not export: a metric renamed in the server without the dashboard, or a typo.
func TestQueriesNameOnlyExportedMetrics(t *testing.T) {
	ps := parse(t, allQueries(t))
	for _, u := range dashcheck.Unknown(ps, exportedOffline(t), "up") {
		t.Error(u)
	}
}

// TestRenamedMetricIsCaught renames one metric in a copy of the dashboard and checks that the
// check above names the panels that read it.
func TestRenamedMetricIsCaught(t *testing.T) {
	data, err := Files.ReadFile("grafana/headroom.json")
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.ReplaceAll(string(data), "headroom_snapshot_age_seconds", "headroom_snapshot_age")
	d, err := dashcheck.LoadDashboard([]byte(renamed))
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, u := range dashcheck.Unknown(parse(t, loadDashboard(t).Queries()), exportedOffline(t), "up") {
		before[u] = true
	}
	var got []string
	for _, u := range dashcheck.Unknown(parse(t, d.Queries()), exportedOffline(t), "up") {
		if !before[u] {
			got = append(got, u)
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], `panel "Snapshot age"`) || !strings.Contains(got[0], `"headroom_snapshot_age"`) {
		t.Errorf("Unknown after a rename = %q, want one complaint about panel \"Snapshot age\"", got)
	}
}

// TestPromtoolParsesDashboardQueries hands every dashboard query to the installed
// Prometheus's promtool as a recording rule: besides the current parser (TestQueriesParse),
// an older Prometheus (Debian's) must accept them too.
func TestPromtoolParsesDashboardQueries(t *testing.T) {
	promtool := labtest.Promtool(t)
	var rules dashcheck.RuleGroups
	grp := dashcheck.RuleGroup{Name: "dashboard"}
	qs := loadDashboard(t).Queries()
	for i, q := range qs {
		grp.Rules = append(grp.Rules, dashcheck.Rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: dashcheck.Expand(q.Expr)})
	}
	rules.Groups = append(rules.Groups, grp)
	data, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), promtool, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules over the %d dashboard queries: %v\n%s", len(qs), err, out)
	}
}

// TestPromtoolCheckRules runs promtool over the plain rules file and over the groups of the
// PrometheusRule (the Prometheus Operator hands those to Prometheus the same way).
func TestPromtoolCheckRules(t *testing.T) {
	promtool := labtest.Promtool(t)
	dir := t.TempDir()
	plain, err := Files.ReadFile("prometheus/headroom.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	pr := find(t, render(t, "prometheus"), "PrometheusRule", "headroom")
	fromCR, err := yaml.Marshal(pr["spec"])
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		rules   []byte
		wantErr bool
	}{
		{name: "rules file", rules: plain},
		{name: "PrometheusRule spec", rules: fromCR},
		{name: "broken rule is rejected", rules: []byte("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m]\n"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yml")
			if err := os.WriteFile(f, tc.rules, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), promtool, "check", "rules", f).CombinedOutput()
			if (err != nil) != tc.wantErr {
				t.Errorf("promtool check rules: %v, want error: %v\n%s", err, tc.wantErr, out)
			}
		})
	}
}

// TestDashboardTypeChecks compiles headroom.json against Grafana's own TypeScript types for
// dashboards (npm @grafana/schema): there is no Grafana here to load it.
func TestDashboardTypeChecks(t *testing.T) {
	labtest.Short(t, "TypeScript compiler with @grafana/schema (npm)")
	data, err := Files.ReadFile("grafana/headroom.json")
	if err != nil {
		t.Fatal(err)
	}
	err = dashcheck.TypeCheck(t.Context(), data)
	if errors.Is(err, lab.ErrUnavailable) {
		labtest.Check(t, "TypeScript compiler with @grafana/schema", err)
	}
	if err != nil {
		t.Error(err)
	}
}
