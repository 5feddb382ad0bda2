package simulate

import (
	"path/filepath"
	"strings"
	"testing"
)

const validScenario = `name: ok
arrivals:
  synthetic: {kind: constant, length: 1m, rate: 1}
service: {kind: fixed, mean: 1s}
cluster:
  nodes:
    - name: n
      allocatable: {cpu: "1", memory: 1Gi}
workload:
  requests: {cpu: 100m}
`

func TestScenarioErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string // replaces the line it shares a key with in validScenario, or is appended
		replace string
		want    []string
	}{
		{name: "unknown top-level field", yaml: "colour: blue\n", want: []string{"s.yaml:11", `unknown field "colour"`}},
		{name: "unknown nested field", replace: "  requests: {cpu: 100m}\n", yaml: "  requests: {cpu: 100m}\n  maxReplica: 3\n", want: []string{"s.yaml:11", `unknown field "maxReplica"`}},
		{name: "bad quantity", replace: "  requests: {cpu: 100m}\n", yaml: "  requests: {cpu: lots}\n", want: []string{"s.yaml", `quantity "lots"`}},
		{name: "bad duration", replace: "service: {kind: fixed, mean: 1s}\n", yaml: "service: {kind: fixed, mean: soon}\n", want: []string{"s.yaml", `duration "soon"`}},
		{name: "unknown service kind", replace: "service: {kind: fixed, mean: 1s}\n", yaml: "service: {kind: gamma, mean: 1s}\n", want: []string{"s.yaml:4", `service kind "gamma"`}},
		{name: "unknown synthetic kind", replace: "  synthetic: {kind: constant, length: 1m, rate: 1}\n", yaml: "  synthetic: {kind: sawtooth, length: 1m}\n", want: []string{"s.yaml:3", `"sawtooth"`}},
		{name: "unknown policy in run", yaml: "run: [headroom, magic]\n", want: []string{"s.yaml:11", `unknown policy "magic"`}},
		{name: "fractional polling interval", yaml: "keda: {pollingInterval: 1500ms}\n", want: []string{"s.yaml:11", "pollingInterval 1.5s"}},
		{name: "min above max", replace: "  requests: {cpu: 100m}\n", yaml: "  requests: {cpu: 100m}\n  minReplicas: 5\n  maxReplicas: 2\n", want: []string{"minReplicas 5", "maxReplicas 2"}},
		{name: "negative grace period", replace: "  requests: {cpu: 100m}\n", yaml: "  requests: {cpu: 100m}\n  terminationGracePeriod: -1s\n", want: []string{"s.yaml", "terminationGracePeriod -1s"}},
		{name: "bad behavior policy", yaml: "policies: {kedaTuned: {behavior: {scaleDown: {policies: [{type: Ratio, value: 2, periodSeconds: 15}]}}}}\n", want: []string{"s.yaml", "kedaTuned behavior", "Ratio"}},
		{name: "bad step percent", yaml: "policies: {headroom: {policy: {stepPercent: 20}}}\n", want: []string{"s.yaml", "stepPercent 20"}},
		{name: "cpu-hpa without a cpu request", replace: "  requests: {cpu: 100m}\n", yaml: "  requests: {memory: 1Gi}\n", want: []string{"s.yaml:10", "cpu-hpa needs workload requests.cpu"}},
		{name: "no nodes", replace: "    - name: n\n      allocatable: {cpu: \"1\", memory: 1Gi}\n", yaml: "    []\n", want: []string{"s.yaml", "at least one node"}},
		{name: "no arrivals", replace: "arrivals:\n  synthetic: {kind: constant, length: 1m, rate: 1}\n", yaml: "", want: []string{"s.yaml", "set trace or synthetic"}},
		{name: "trace and synthetic", replace: "arrivals:\n", yaml: "arrivals:\n  trace: x.csv\n", want: []string{"s.yaml:", "not both"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := validScenario
			if tc.replace != "" {
				y = strings.Replace(y, tc.replace, tc.yaml, 1)
			} else {
				y += tc.yaml
			}
			_, err := parseScenario([]byte(y), "s.yaml", nil)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := parseScenario([]byte(validScenario), "s.yaml", nil); err != nil {
		t.Errorf("valid scenario: %v", err)
	}
}

func TestLoadScenarioNamesFileAndLine(t *testing.T) {
	file := filepath.Join("testdata", "bad", "unknown-field.yaml")
	_, err := LoadScenario(file)
	if err == nil || !strings.Contains(err.Error(), file+":11:") || !strings.Contains(err.Error(), "maxReplica") {
		t.Errorf("LoadScenario(%s) = %v, want an error naming %s:11 and maxReplica", file, err, file)
	}
}

func TestTraceErrorsThroughRun(t *testing.T) {
	sc, err := parseScenario([]byte(validScenario), "s.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	writeFile(t, bad, "period,count\n10,1\n9,1\n")
	_, err = Run(t.Context(), sc, Options{Trace: bad})
	if err == nil || !strings.Contains(err.Error(), bad+":3") || !strings.Contains(err.Error(), `period "9"`) {
		t.Errorf("Run with an unsorted trace = %v, want an error naming %s:3 and period \"9\"", err, bad)
	}
	_, err = Run(t.Context(), sc, Options{Trace: filepath.Join(t.TempDir(), "missing.csv")})
	if err == nil || !strings.Contains(err.Error(), "missing.csv") {
		t.Errorf("Run with a missing trace = %v, want an error naming it", err)
	}
}

func TestShippedScenariosLoad(t *testing.T) {
	names := ShippedScenarios()
	if len(names) < 3 || !contains(names, DefaultScenario) {
		t.Fatalf("shipped scenarios %v: want at least 3 including %s", names, DefaultScenario)
	}
	for _, n := range names {
		disk, err := LoadScenario(filepath.Join("scenarios", n+".yaml"))
		if err != nil {
			t.Errorf("LoadScenario(%s): %v", n, err)
			continue
		}
		if disk.Name != n {
			t.Errorf("scenario file %s.yaml is named %q; the name should match the file", n, disk.Name)
		}
	}
	if _, ok, _ := LoadShipped("no-such-scenario"); ok {
		t.Error("LoadShipped(no-such-scenario) reported ok")
	}
}
