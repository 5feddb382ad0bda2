package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/headroom-autoscaler/headroom/e2e"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadBurst(t *testing.T) {
	tests := []struct {
		name          string
		csv           string
		window, speed int
		total         int
		want          []int
		wantErr       string
	}{
		{name: "shape kept, total scaled", csv: "period,count\na,1\nb,1\nc,2\nd,4\n", window: 4, speed: 2, total: 16, want: []int{4, 12}},
		{name: "window shorter than the trace", csv: "period,count\na,5\nb,5\nc,100\n", window: 2, speed: 1, total: 10, want: []int{5, 5}},
		{name: "rounding keeps the total", csv: "period,count\na,1\nb,1\nc,1\n", window: 3, speed: 1, total: 10, want: []int{3, 3, 4}},
		{name: "bad count", csv: "period,count\na,x\n", window: 1, speed: 1, total: 1, wantErr: `count "x"`},
		{name: "no arrivals", csv: "period,count\na,0\n", window: 1, speed: 1, total: 1, wantErr: "no arrivals"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "trace.csv")
			if err := os.WriteFile(p, []byte(tc.csv), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readBurst(p, tc.window, tc.speed, tc.total)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseSample(t *testing.T) {
	tests := []struct {
		line      string
		wantName  string
		wantLabel string
		wantValue string
		wantOK    bool
	}{
		{line: `headroom_fit_replicas{namespace="jobs",scaledobject="worker"} 3`, wantName: "headroom_fit_replicas", wantLabel: "worker", wantValue: "3", wantOK: true},
		{line: `# HELP headroom_fit_replicas x`},
		{line: `go_goroutines 12`},
		{line: ``},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			name, lbls, value, ok := parseSample(tc.line)
			if ok != tc.wantOK || name != tc.wantName || value != tc.wantValue || lbls["scaledobject"] != tc.wantLabel {
				t.Errorf("got %q %v %q %v, want %q scaledobject=%q %q %v", name, lbls, value, ok, tc.wantName, tc.wantLabel, tc.wantValue, tc.wantOK)
			}
		})
	}
}

// TestExampleManifests adapts the repository's example ScaledObjects: every trigger points
// at the local scaler, polling is fast, everything lands in the demo namespace.
func TestExampleManifests(t *testing.T) {
	root, err := e2e.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exampleManifests(root, "127.0.0.1:4242")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{`"scalerAddress":"127.0.0.1:4242"`, `"pollingInterval":1`, `"namespace":"jobs"`, `"name":"loader"`, `"name":"worker"`} {
		if !strings.Contains(s, want) {
			t.Errorf("adapted manifests lack %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, "headroom.headroom.svc") {
		t.Errorf("adapted manifests still name the in-cluster scaler address")
	}
}

func TestStackRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "no replicas", args: []string{"-replicas", "0"}, want: "-replicas 0"},
		{name: "zero refresh", args: []string{"-refresh", "0s"}, want: "-refresh 0s"},
		{name: "negative refresh", args: []string{"-refresh", "-1s"}, want: "-refresh -1s"},
		{name: "argument", args: []string{"extra"}, want: `unexpected argument "extra"`},
		{name: "scaler environment", args: []string{"-scaler-env", "GOGC=400", "-scaler-env", "GOGC"}, want: `scaler environment "GOGC" is not KEY=VALUE`},
		{name: "scaler CPUs", args: []string{"-scaler-cpus", "1;2"}, want: `scaler CPUs "1;2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr strings.Builder
			err := runStack(t.Context(), tc.args, strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runStack(%q) = %v, want an error naming %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestDemoLineShowsTheAnswer reads a scaler's exposition the way the demo does and checks
// that a workload KEDA has just taken to zero shows headroom's answer of 0 next to the HPA's
// lagging 1.
func TestDemoLineShowsTheAnswer(t *testing.T) {
	exposition := strings.Join([]string{
		`# HELP headroom_desired_replicas Replicas the scaler answers for the ScaledObject (the decision).`,
		`headroom_desired_replicas{namespace="jobs",scaledobject="worker"} 0`,
		`headroom_desired_replicas{namespace="other",scaledobject="worker"} 7`,
		`headroom_fit_replicas{namespace="jobs",scaledobject="worker"} 20`,
		`headroom_limit{limit="capacity",namespace="jobs",scaledobject="worker"} 0`,
		`headroom_limit{limit="queue",namespace="jobs",scaledobject="worker"} 1`,
		`headroom_desired_replicas{namespace="jobs",scaledobject="loader"} 2`,
	}, "\n")
	m := parseMetrics(strings.NewReader(exposition))
	if got, want := m["worker"], (soMetrics{answer: "0", fit: "20", limit: "queue"}); got != want {
		t.Errorf("worker: %+v, want %+v", got, want)
	}
	if got, want := m["loader"], (soMetrics{answer: "2"}); got != want {
		t.Errorf("loader: %+v, want %+v", got, want)
	}
	v := view{
		queues: map[string][2]int{workerQueue: {0, 0}, loaderQueue: {3, 1}},
		workload: map[string]wlView{
			"worker": {answer: m["worker"].answer, hpa: 1, fit: m["worker"].fit, limit: m["worker"].limit},
			"loader": {answer: "-", hpa: 2, current: 2, ready: 1, pending: 1, fit: "-", limit: "-"},
		},
	}
	want := workerQueue + "=0+0 " + loaderQueue + "=3+1 | worker answer=0 hpa=1 current=0 ready=0 pending=0 fit=20 limit=queue | loader answer=- hpa=2 current=2 ready=1 pending=1 fit=- limit=-"
	if got := v.line(); got != want {
		t.Errorf("line:\n got %s\nwant %s", got, want)
	}
}
