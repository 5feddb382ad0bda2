package simulate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestGolden runs the small synthetic scenarios under testdata/golden and compares the JSON
// report and the table with the golden files (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sc, err := LoadScenario(file)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(t.Context(), sc, Options{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			var got bytes.Buffer
			if err := rep.WriteJSON(&got); err != nil {
				t.Fatal(err)
			}
			got.WriteString("\n")
			if err := rep.WriteTable(&got); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("report differs from %s (run with -update if the change is intended):\ngot:\n%s\nwant:\n%s", golden, got.Bytes(), want)
			}
		})
	}
}

// allScenarios is every shipped and golden scenario, and whether it is shipped.
func allScenarios(t *testing.T) (out []*Scenario, shipped map[*Scenario]bool) {
	t.Helper()
	shipped = map[*Scenario]bool{}
	for _, name := range ShippedScenarios() {
		sc, ok, err := LoadShipped(name)
		if err != nil || !ok {
			t.Fatalf("LoadShipped(%q) = %v, %v", name, ok, err)
		}
		out = append(out, sc)
		shipped[sc] = true
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.yaml"))
	for _, f := range files {
		sc, err := LoadScenario(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sc)
	}
	return out, shipped
}

// TestInvariants runs every scenario and checks what must hold whatever the settings:
// Little's law (inside Run) and no policy waiting or draining better than the bound; and on
// the shipped scenarios, that headroom never kills a busy worker.
func TestInvariants(t *testing.T) {
	scenarios, shipped := allScenarios(t)
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			rep, err := Run(t.Context(), sc, Options{})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			byName := map[string]Result{}
			for _, r := range rep.Policies {
				byName[r.Name] = r
			}
			if got := byName[PolicyHeadroom].BusyKilled; shipped[sc] && got != 0 {
				t.Errorf("headroom busy_killed = %d, want 0", got)
			}
			bound := byName[PolicyBound]
			for _, r := range rep.Policies {
				for _, c := range []struct {
					metric     string
					got, bound float64
				}{
					{"wait_p50_s", r.WaitP50, bound.WaitP50}, {"wait_p95_s", r.WaitP95, bound.WaitP95},
					{"wait_p99_s", r.WaitP99, bound.WaitP99}, {"wait_max_s", r.WaitMax, bound.WaitMax},
					{"drain_max_s", r.DrainMax, bound.DrainMax},
				} {
					if c.got < c.bound {
						t.Errorf("%s %s = %v beats the bound's %v", r.Name, c.metric, c.got, c.bound)
					}
				}
			}
		})
	}
}

// hpaScenario is a burst of messages at t=0 with hour-long tasks on a large cluster, run
// through keda-tuned with queueLength 1 and the HPA's legacy rules.
func hpaScenario(t *testing.T, messages, minReplicas, maxReplicas int) *Scenario {
	t.Helper()
	y := fmt.Sprintf(`
name: hpa
drain: 1s
arrivals: {synthetic: {kind: burst, length: 5m, rate: 0, to: %d, at: 0s, width: 1s}}
service: {kind: fixed, mean: 1h}
cluster: {nodes: [{name: big, count: 10, allocatable: {cpu: "64", memory: 256Gi, pods: 200}}]}
workload: {requests: {cpu: 100m, memory: 128Mi}, minReplicas: %d, maxReplicas: %d}
policies: {kedaTuned: {queueLength: 1}}
run: [keda-tuned]
`, messages, minReplicas, maxReplicas)
	sc, err := parseScenario([]byte(y), "hpa.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestHPAThroughSimulator(t *testing.T) {
	tests := []struct {
		name                     string
		messages, minRep, maxRep int
		want                     []int32 // successive replica counts written
	}{
		// The legacy rule allows max(2 × current, 4) per sync: KEDA activates 0 → 1, then the
		// HPA goes 1 → 4 → 8 → 16 → … (DESIGN.md, seen on the real chain).
		{name: "ramp under the default behavior", messages: 100, minRep: 0, maxRep: 100, want: []int32{0, 1, 4, 8, 16, 32, 64, 100}},
		{name: "ramp capped by maxReplicas", messages: 100, minRep: 0, maxRep: 20, want: []int32{0, 1, 4, 8, 16, 20}},
		// 21 messages on 20 workers: usage ratio 1.05, inside the 10% band: no change.
		{name: "inside the tolerance band", messages: 21, minRep: 20, maxRep: 40, want: []int32{20}},
		// 23 messages: ratio 1.15, outside the band: 23.
		{name: "outside the tolerance band", messages: 23, minRep: 20, maxRep: 40, want: []int32{20, 23}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := hpaScenario(t, tc.messages, tc.minRep, tc.maxRep)
			m, err := compile(sc, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := newSim(m, PolicyKEDATuned)
			s.ctl = m.newController(s, PolicyKEDATuned)
			s.start(m.initialReplicas(PolicyKEDATuned))
			if err := s.run(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			got := []int32{int32(tc.minRep)}
			for _, c := range s.met.changes {
				got = append(got, c.to)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("replicas went %v, want %v (changes %+v)", got, tc.want, s.met.changes)
			}
			for i := 2; i < len(s.met.changes); i++ {
				if d := s.met.changes[i].t - s.met.changes[i-1].t; d != 15 {
					t.Errorf("change %d came %d s after the previous one, want one HPA sync (15 s)", i, d)
				}
			}
		})
	}
}

// TestHeadroomProtectsBusyWorkers: after a burst, the queue-length baseline scales down
// through the ReplicaSet controller's victim order and kills busy workers; headroom's
// deletion costs remove idle ones first. The costs are only as fresh as the scaler's broker
// reading: with a reading up to 5 s old, a worker idle at the reading can take a message
// before the scale-down removes it, and the model shows it.
func TestHeadroomProtectsBusyWorkers(t *testing.T) {
	tests := []struct {
		name       string
		refresh    string
		wantKilled bool
	}{
		{name: "reading every second", refresh: "1s", wantKilled: false},
		{name: "reading every 5 s", refresh: "5s", wantKilled: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := runBusyScenario(t, tc.refresh)
			if got := rep.Policies[0].BusyKilled; (got > 0) != tc.wantKilled {
				t.Errorf("headroom busy_killed = %d, want killed: %v", got, tc.wantKilled)
			}
			if got := rep.Policies[1].BusyKilled; got == 0 {
				t.Errorf("keda-tuned busy_killed = 0, want some: the scenario is meant to make the ReplicaSet controller remove busy workers")
			}
		})
	}
}

func runBusyScenario(t *testing.T, refresh string) *Report {
	t.Helper()
	y := `
name: busy
drain: 2h
arrivals: {synthetic: {kind: burst, length: 30m, rate: 0.02, to: 0.5, at: 1m, width: 2m}}
service: {kind: exponential, mean: 10m}
cluster: {nodes: [{name: big, count: 2, allocatable: {cpu: "64", memory: 256Gi}}]}
workload: {requests: {cpu: 100m, memory: 128Mi}, startLatency: 5s, maxReplicas: 50}
policies:
  headroom: {brokerRefresh: ` + refresh + `}
  kedaTuned: {queueLength: 1, behavior: {scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Percent, value: 50, periodSeconds: 15}]}}}
run: [headroom, keda-tuned]
`
	sc, err := parseScenario([]byte(y), "busy.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestReportJSONKeys(t *testing.T) {
	sc, err := LoadScenario(filepath.Join("testdata", "golden", "step.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Policies []map[string]any `json:"policies"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := []string{"name", "wait_p50_s", "wait_p95_s", "wait_p99_s", "wait_max_s", "drain_max_s", "replica_seconds",
		"pending_pod_seconds", "overcommit_seconds", "busy_killed", "scale_actions", "theta_u", "theta_o", "tau_u", "tau_o", "instability"}
	slices.Sort(want)
	if len(doc.Policies) != len(AllPolicies) {
		t.Fatalf("got %d policies, want %d", len(doc.Policies), len(AllPolicies))
	}
	for _, p := range doc.Policies {
		var keys []string
		for k := range p {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("policy %v has keys %v, want %v", p["name"], keys, want)
		}
	}
}

func TestWriteOutputs(t *testing.T) {
	sc, err := LoadScenario(filepath.Join("testdata", "golden", "burst.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := rep.WriteOutputs(dir); err != nil {
		t.Fatalf("WriteOutputs: %v", err)
	}
	want := []string{"report.md", "queue.png", "replicas.png", "memory.png", "memory-node.png"}
	for _, p := range AllPolicies {
		want = append(want, "timeline-"+p+".csv")
	}
	for _, f := range want {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, img := range []string{"queue.png", "replicas.png", "memory.png", "memory-node.png"} {
		if !bytes.Contains(md, []byte("("+img+")")) {
			t.Errorf("report.md does not embed %s", img)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "timeline-headroom.csv"))
	if first, _, _ := strings.Cut(string(csv), "\n"); !strings.HasPrefix(first, "t_s,arrivals,queue_ready,unacked,desired,running,ready,pending") {
		t.Errorf("timeline header = %q", first)
	}
}

// TestCountersMatchPods checks the sim's running counters against its pods after every tick
// of every shipped and golden scenario's first hour, for every policy.
func TestCountersMatchPods(t *testing.T) {
	scenarios, _ := allScenarios(t)
	for _, sc := range scenarios {
		for _, policy := range sc.runList() {
			t.Run(sc.Name+"/"+policy, func(t *testing.T) {
				var trace *Trace
				if sc.Arrivals.Trace != "" {
					var err error
					if trace, err = sc.readTrace("", ""); err != nil {
						t.Fatal(err)
					}
				}
				m, err := compile(sc, trace)
				if err != nil {
					t.Fatal(err)
				}
				s := newSim(m, policy)
				s.ctl = m.newController(s, policy)
				s.start(m.initialReplicas(policy))
				for s.t = 0; s.t < min(m.horizon, 3600); s.t++ {
					s.step()
					var pending, bound, ready, busy int
					var unacked int64
					perNode := make([]int64, len(s.nodes))
					busyNode := make([]int64, len(s.nodes))
					// Terminating workers (draining within the grace period) are bound and
					// may be busy, but no longer in the ReplicaSet.
					for _, p := range append(append([]*pod(nil), s.pods...), s.draining...) {
						if p.node < 0 {
							pending++
							continue
						}
						bound++
						perNode[p.node]++
						if p.ready {
							ready++
						}
						if p.busy > 0 {
							busy++
							busyNode[p.node]++
						}
						unacked += int64(p.busy)
					}
					var queued int64
					for _, c := range s.q[s.qh:] {
						queued += c.n
					}
					if pending != s.pending || bound != s.bound || ready != s.readyN || busy != s.busyW || unacked != s.unacked || queued != s.ready || int32(len(s.pods)) != s.spec {
						t.Fatalf("t=%d: counters pending %d bound %d ready %d busy %d unacked %d queued %d spec %d; pods say %d %d %d %d %d %d %d",
							s.t, s.pending, s.bound, s.readyN, s.busyW, s.unacked, s.ready, s.spec, pending, bound, ready, busy, unacked, queued, len(s.pods))
					}
					for i := range s.nodes {
						if s.nodes[i].workers != perNode[i] || s.nodes[i].busy != busyNode[i] {
							t.Fatalf("t=%d: node %d counts %d workers %d busy, pods say %d and %d", s.t, i, s.nodes[i].workers, s.nodes[i].busy, perNode[i], busyNode[i])
						}
					}
				}
			})
		}
	}
}

// TestShippedHeadroomKillsNoBusyWorker runs every shipped scenario at the server's default
// broker refresh (5 s) and checks that headroom kills no busy worker, with the baselines'
// figures logged beside it (they share the scenario's worker settings, grace period
// included).
func TestShippedHeadroomKillsNoBusyWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every shipped scenario in full")
	}
	for _, name := range ShippedScenarios() {
		t.Run(name, func(t *testing.T) {
			sc, _, err := LoadShipped(name)
			if err != nil {
				t.Fatal(err)
			}
			if r := sc.Policies.Headroom.BrokerRefresh.Duration; r != 0 {
				t.Fatalf("brokerRefresh %v: shipped scenarios must use the server's default", r)
			}
			rep, err := Run(t.Context(), sc, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var line []string
			for _, res := range rep.Policies {
				line = append(line, fmt.Sprintf("%s %d", res.Name, res.BusyKilled))
				if res.Name == PolicyHeadroom && res.BusyKilled != 0 {
					t.Errorf("headroom busy_killed = %d, want 0", res.BusyKilled)
				}
			}
			t.Logf("busy_killed: %s", strings.Join(line, ", "))
		})
	}
}
