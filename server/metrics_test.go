package server_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

// fixedState builds a server over fixed inputs: two ScaledObjects, one limited by capacity,
// and one without a decision.
func fixedState(t *testing.T) (*server.Server, *prometheus.Registry) {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	q := (&fixedQueue{
		snap:  queue.Snapshot{Ready: 30, Unacked: 4, Consumers: 4, InFlightVisible: true, Queues: 1},
		stats: queue.Stats{Mode: queue.ModeManagement, Requests: 12, Refreshes: 10, Failures: 1, Partial: 2},
		// The loader's four pods: one holds 4 messages, three are idle.
		consumers: []queue.Consumer{{PeerHost: "10.0.0.1", PeerPort: 40000, Channel: 1, Unacked: 4}, {PeerHost: "10.0.0.2", PeerPort: 40000, Channel: 1}},
	}).at(now.Add(-2 * time.Second))
	c := newFakeCluster()
	var loaders []server.WorkerPod
	for i := range 4 {
		loaders = append(loaders, server.WorkerPod{Name: fmt.Sprintf("loader-%d", i), IP: fmt.Sprintf("10.0.0.%d", i+1), Node: "node-a", Running: true, Ready: true})
	}
	// 34 messages, 20 per loader: the loaders scale down from 4 to 2, so who is busy is read.
	c.add("shop", "loader", server.Workload{Current: 4, Ready: 4, Fit: 2, Kind: "Deployment", Pods: loaders}, map[string]string{"queue": "loads", "messagesPerReplica": "20"})
	c.add("shop", "worker", server.Workload{Current: 40, Ready: 40, Fit: 9}, map[string]string{"queue": "jobs"})
	// Its HPA behavior is not set, and its trigger is polled (server.HPAFindings).
	c.sos[len(c.sos)-1].Warnings = []server.Finding{{Field: "spec.advanced.horizontalPodAutoscalerConfig.behavior"}, {Field: "spec.triggers[0].type"}}
	// A ScaledObject whose target does not exist: no decision, limit="error".
	c.add("shop", "orphan", server.Workload{}, map[string]string{"queue": "orphans"})
	delete(c.workloads, "orphan")
	reg := prometheus.NewRegistry()
	srv, err := server.New(server.Options{Queue: q, Brokers: q, Cluster: c, Registerer: reg, Version: "v0.0.0-test",
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv.PlanNow()
	// One call through the interceptor, so the histogram has a series.
	h := srv.UnaryInterceptor()
	_, _ = h(context.Background(), nil, &grpcInfo, func(ctx context.Context, _ any) (any, error) {
		return srv.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref("shop", "worker", map[string]string{"queue": "jobs"})})
	})
	return srv, reg
}

func TestMetricsGolden(t *testing.T) {
	_, reg := fixedState(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if mf.GetName() == "headroom_plan_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n == 0 {
				t.Errorf("headroom_plan_duration_seconds counts no pass after a plan")
			}
		}
		if n := mf.GetName(); n == "headroom_grpc_request_duration_seconds" || n == "headroom_plan_duration_seconds" {
			continue // durations vary; checked by name below
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	// The Go version is the machine's: the golden file holds a placeholder.
	exposition := strings.ReplaceAll(buf.String(), runtime.Version(), "GOVERSION")
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(exposition), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got := exposition; got != string(want) {
		t.Errorf("exposition differs from %s (run go test ./server -run TestMetricsGolden -update after an intended change):\n--- got\n%s", golden, got)
	}
}

func TestMetricsLintAndNames(t *testing.T) {
	_, reg := fixedState(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	// The dashboard and alerts are written against these names: a rename must fail here.
	fixed := []string{
		"headroom_desired_replicas", "headroom_current_replicas", "headroom_ready_replicas",
		"headroom_pending_replicas", "headroom_need_replicas", "headroom_fit_replicas",
		"headroom_share_replicas", "headroom_busy_workers", "headroom_idle_workers", "headroom_limit", "headroom_hpa_warnings", "headroom_queue_messages",
		"headroom_snapshot_age_seconds", "headroom_broker_requests_total", "headroom_broker_refreshes_total", "headroom_broker_errors_total",
		"headroom_broker_partial_reads_total", "headroom_grpc_request_duration_seconds", "headroom_plan_duration_seconds", "headroom_node_free", "headroom_decisions_total",
		"headroom_limit_changes_total", "headroom_scale_down_held_total", "headroom_deletion_cost_patches_total",
		"headroom_caches_synced", "headroom_build_info",
	}
	for _, name := range fixed {
		if !got[name] {
			t.Errorf("metric %s is not exported", name)
		}
	}
	for _, name := range server.MetricNames {
		if !got[name] {
			t.Errorf("server.MetricNames lists %s, which is not exported", name)
		}
	}
	if len(server.MetricNames) != len(fixed) {
		t.Errorf("server.MetricNames has %d names, want %d: keep it and this list in step", len(server.MetricNames), len(fixed))
	}
	for name := range got {
		if strings.HasPrefix(name, "headroom_") && !contains(server.MetricNames, name) {
			t.Errorf("exported %s is missing from server.MetricNames", name)
		}
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
