package dashcheck

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExpand(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{name: "plain", expr: `up`, want: `up`},
		{name: "dollar variable", expr: `x{namespace=~"$namespace"}`, want: `x{namespace=~".*"}`},
		{name: "braced with format", expr: `x{so=~"${scaledobject:regex}"}`, want: `x{so=~".*"}`},
		{name: "brackets", expr: `x{job=~"[[job]]"}`, want: `x{job=~".*"}`},
		{name: "rate interval", expr: `rate(x[$__rate_interval])`, want: `rate(x[1m])`},
		{name: "range seconds", expr: `x * $__range_s`, want: `x * 60`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Expand(tc.expr); got != tc.want {
				t.Errorf("Expand(%q) = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestExpositionNames(t *testing.T) {
	const text = `# HELP headroom_desired_replicas Desired.
# TYPE headroom_desired_replicas gauge
headroom_desired_replicas{namespace="a",scaledobject="b"} 3
# TYPE headroom_grpc_request_duration_seconds histogram
headroom_grpc_request_duration_seconds_bucket{le="+Inf"} 1
headroom_grpc_request_duration_seconds_sum 0.1
headroom_grpc_request_duration_seconds_count 1
headroom_caches_synced 1
`
	got, err := ExpositionNames(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"headroom_desired_replicas", "headroom_grpc_request_duration_seconds_bucket",
		"headroom_grpc_request_duration_seconds_count", "headroom_caches_synced"} {
		if !got[want] {
			t.Errorf("ExpositionNames: %q missing from %v", want, got)
		}
	}
	if _, err := ExpositionNames(strings.NewReader("{a=\"b\"} 1\n")); err == nil {
		t.Error("ExpositionNames of a line without a name: no error")
	}
}

func TestLoadDashboardRejects(t *testing.T) {
	const okTarget = `{"refId":"A","expr":"up","datasource":{"type":"prometheus","uid":"${datasource}"}}`
	const dsVar = `"templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]}`
	tests := []struct {
		name    string
		json    string
		wantErr string
	}{
		{name: "not json", json: `{`, wantErr: "decode dashboard"},
		{name: "no uid", json: `{` + dsVar + `}`, wantErr: "no uid"},
		{name: "no datasource variable", json: `{"uid":"x"}`, wantErr: "no datasource variable"},
		{name: "duplicate ids", json: `{"uid":"x",` + dsVar + `,"panels":[
			{"id":1,"type":"timeseries","title":"a","gridPos":{"h":1,"w":1},"targets":[` + okTarget + `]},
			{"id":1,"type":"timeseries","title":"b","gridPos":{"h":1,"w":1},"targets":[` + okTarget + `]}]}`,
			wantErr: "id 1 already used"},
		{name: "hard-coded datasource", json: `{"uid":"x",` + dsVar + `,"panels":[
			{"id":1,"type":"timeseries","title":"a","gridPos":{"h":1,"w":1},"targets":[{"refId":"A","expr":"up","datasource":{"uid":"prom1"}}]}]}`,
			wantErr: "want uid ${datasource}"},
		{name: "no gridPos", json: `{"uid":"x",` + dsVar + `,"panels":[
			{"id":1,"type":"timeseries","title":"a","targets":[` + okTarget + `]}]}`,
			wantErr: "gridPos"},
		{name: "panel without queries", json: `{"uid":"x",` + dsVar + `,"panels":[
			{"id":1,"type":"timeseries","title":"a","gridPos":{"h":1,"w":1}}]}`,
			wantErr: "no queries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadDashboard([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadDashboard: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDashboardQueries(t *testing.T) {
	d, err := LoadDashboard([]byte(`{"uid":"x","templating":{"list":[
		{"name":"datasource","type":"datasource","query":"prometheus"},
		{"name":"ns","type":"query","query":{"query":"label_values(m{job=~\"$job\"}, namespace)"}}]},
		"panels":[{"id":1,"type":"row","title":"r","gridPos":{"h":1,"w":24},"panels":[
			{"id":2,"type":"timeseries","title":"p","gridPos":{"h":1,"w":1},
			 "targets":[{"refId":"A","expr":"up","datasource":{"uid":"${datasource}"}}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got := d.Queries()
	want := []Query{
		{Source: `panel "p" target A`, Expr: "up"},
		{Source: `variable "ns"`, Expr: `m{job=~"$job"}`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Queries() = %+v, want %+v", got, want)
	}
}

func TestLoadRulesRejects(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{name: "empty", yaml: ``, wantErr: "no groups"},
		{name: "unknown field", yaml: "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    severity: x\n", wantErr: "severity"},
		{name: "alert and record", yaml: "groups:\n- name: g\n  rules:\n  - alert: A\n    record: r\n    expr: up\n", wantErr: "exactly one"},
		{name: "no expr", yaml: "groups:\n- name: g\n  rules:\n  - alert: A\n", wantErr: "want an expr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadRules([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadRules: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestUnknown(t *testing.T) {
	ps := []Parsed{
		{Query: Query{Source: "panel a"}, Metrics: []string{"headroom_desired_replicas", "up"}},
		{Query: Query{Source: "panel b"}, Metrics: []string{"headroom_desired_replica"}},
	}
	got := Unknown(ps, map[string]bool{"headroom_desired_replicas": true}, "up")
	want := []string{`panel b: metric "headroom_desired_replica" is not exported by the scaler`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Unknown = %q, want %q", got, want)
	}
}

// TestParse runs Prometheus's real parser (the dashcheck command) over good and bad
// expressions.
func TestParse(t *testing.T) {
	labtest.Short(t, "PromQL parser (builds internal/tools/dashcheck)")
	qs := []Query{
		{Source: "good", Expr: `sum by (le) (rate(headroom_grpc_request_duration_seconds_bucket{job=~"$job"}[$__rate_interval]))`},
		{Source: "bad", Expr: `sum by (le) (rate(x[5m])`},
		{Source: "two metrics", Expr: `a > on (x) b`},
	}
	ps, err := Parse(t.Context(), qs)
	if errors.Is(err, lab.ErrUnavailable) {
		labtest.Check(t, "PromQL parser", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		got         Parsed
		wantErr     bool
		wantMetrics []string
	}{
		{name: "good", got: ps[0], wantMetrics: []string{"headroom_grpc_request_duration_seconds_bucket"}},
		{name: "bad", got: ps[1], wantErr: true},
		{name: "two metrics", got: ps[2], wantMetrics: []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.got.Err != "") != tc.wantErr {
				t.Errorf("Err = %q, want error: %v", tc.got.Err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(tc.got.Metrics, tc.wantMetrics) {
				t.Errorf("Metrics = %q, want %q", tc.got.Metrics, tc.wantMetrics)
			}
		})
	}
}

func TestTypeCheck(t *testing.T) {
	labtest.Short(t, "TypeScript compiler with @grafana/schema (npm)")
	const ds = `"templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]}`
	tests := []struct {
		name    string
		json    string
		wantErr string
	}{
		{name: "valid", json: `{"uid":"x","title":"t","schemaVersion":39,` + ds + `,"panels":[{"id":1,"type":"timeseries","title":"p",
			"gridPos":{"h":8,"w":12,"x":0,"y":0},"fieldConfig":{"defaults":{"mappings":[{"type":"value","options":{"1":{"text":"queue"}}}]},"overrides":[]}}]}`},
		{name: "unknown field", json: `{"uid":"x","title":"t","schemaVersion":39,"panelz":[]}`, wantErr: "panelz"},
		{name: "wrong type", json: `{"uid":"x","title":"t","schemaVersion":39,"panels":[{"id":"one","type":"timeseries","gridPos":{"h":8,"w":12,"x":0,"y":0}}]}`, wantErr: "not assignable to type 'number'"},
		{name: "unknown enum value", json: `{"uid":"x","title":"t","schemaVersion":39,"panels":[{"id":1,"type":"timeseries","gridPos":{"h":8,"w":12,"x":0,"y":0},
			"fieldConfig":{"defaults":{"mappings":[{"type":"valu","options":{}}]},"overrides":[]}}]}`, wantErr: "valu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := TypeCheck(t.Context(), []byte(tc.json))
			if errors.Is(err, lab.ErrUnavailable) {
				labtest.Check(t, "TypeScript compiler with @grafana/schema", err)
			}
			if tc.wantErr == "" && err != nil {
				t.Errorf("TypeCheck: %v, want nil", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("TypeCheck: %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}
