package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const smallScenario = `name: small
drain: 10m
arrivals:
  synthetic: {kind: step, length: 30m, rate: 0.05, to: 0.2, at: 10m}
service: {kind: fixed, mean: 30s}
cluster:
  nodes:
    - name: n
      count: 2
      allocatable: {cpu: "4", memory: 8Gi}
workload:
  requests: {cpu: 250m, memory: 256Mi}
  startLatency: 5s
  maxReplicas: 10
`

func writeScenario(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSimulateJSON(t *testing.T) {
	file := writeScenario(t, smallScenario)
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"simulate", "--scenario", file, "--json"}, &stdout, &stderr); err != nil {
		t.Fatalf("simulate: %v (stderr %q)", err, stderr.String())
	}
	var doc struct {
		Scenario string           `json:"scenario"`
		Policies []map[string]any `json:"policies"`
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v", err)
	}
	if dec.More() {
		t.Error("stdout holds more than one JSON document")
	}
	var names []string
	for _, p := range doc.Policies {
		names = append(names, p["name"].(string))
		if len(p) != 16 {
			t.Errorf("policy %v has %d keys, want 16", p["name"], len(p))
		}
	}
	if got, want := strings.Join(names, ","), "headroom,keda-default,keda-tuned,cpu-hpa,fixed,bound"; got != want {
		t.Errorf("policies %s, want %s", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing (not a terminal)", stderr.String())
	}
}

func TestSimulateTableAndOut(t *testing.T) {
	file := writeScenario(t, smallScenario)
	out := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"simulate", "--scenario", file, "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("simulate: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for _, want := range []string{"policy", "headroom", "keda-default", "keda-tuned", "cpu-hpa", "fixed", "bound", "report:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	// Aligned: every row of the table has the same width.
	var widths []int
	for _, l := range lines {
		if strings.Contains(l, "s  ") || strings.HasPrefix(strings.TrimSpace(l), "policy") {
			widths = append(widths, len([]rune(l)))
		}
	}
	for _, w := range widths {
		if w != widths[0] {
			t.Errorf("table rows have different widths %v:\n%s", widths, stdout.String())
			break
		}
	}
	for _, f := range []string{"report.md", "queue.png", "replicas.png", "memory.png", "timeline-headroom.csv"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("--out: %v", err)
		}
	}
}

func TestSimulateTraceOverride(t *testing.T) {
	file := writeScenario(t, smallScenario)
	trace := filepath.Join(t.TempDir(), "t.csv")
	if err := os.WriteFile(trace, []byte("TIMESTAMP\n0\n1.5\n2\n60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"simulate", "--scenario", file, "--trace", trace, "--json"}, &stdout, &stderr); err != nil {
		t.Fatalf("simulate --trace: %v", err)
	}
	if !strings.Contains(stdout.String(), `"busy_killed"`) {
		t.Errorf("no report on stdout: %s", stdout.String())
	}
}

func TestSimulateErrors(t *testing.T) {
	good := writeScenario(t, smallScenario)
	badTrace := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(badTrace, []byte("period,count\n2,1\n1,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		wantUsage bool
		want      string
	}{
		{name: "unknown scenario", args: []string{"--scenario", "nowhere"}, wantUsage: true, want: `scenario "nowhere"`},
		{name: "bad trace format", args: []string{"--scenario", good, "--trace", badTrace, "--trace-format", "xml"}, wantUsage: true, want: `--trace-format "xml"`},
		{name: "format without trace", args: []string{"--scenario", good, "--trace-format", "counts"}, wantUsage: true, want: "needs --trace"},
		{name: "stray argument", args: []string{"--scenario", good, "extra"}, wantUsage: true, want: `"extra"`},
		{name: "unknown flag", args: []string{"--speed", "2"}, wantUsage: true, want: "speed"},
		{name: "unsorted trace", args: []string{"--scenario", good, "--trace", badTrace}, want: badTrace + ":3"},
		{name: "bad scenario", args: []string{"--scenario", writeScenario(t, smallScenario+"extra: 1\n")}, want: `unknown field "extra"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runSimulate(t.Context(), tc.args, &stdout, &stderr)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) && !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("error %q (stderr %q) does not mention %q", err, stderr.String(), tc.want)
			}
			if got := errors.Is(err, errUsage); got != tc.wantUsage {
				t.Errorf("errors.Is(err, errUsage) = %v, want %v", got, tc.wantUsage)
			}
		})
	}
}

func TestSimulateDefaultScenarioIsBuiltIn(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 48 h of trace")
	}
	t.Chdir(t.TempDir()) // the built-in scenario and its trace must not depend on the directory
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"simulate", "--json"}, &stdout, &stderr); err != nil {
		t.Fatalf("simulate: %v", err)
	}
	if !strings.Contains(stdout.String(), `"scenario": "swh-loaders"`) {
		t.Errorf("default scenario is not swh-loaders: %.200s", stdout.String())
	}
}
