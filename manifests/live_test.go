package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headroom-autoscaler/headroom/internal/dashcheck"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
)

var updateSnapshot = flag.Bool("update-snapshot", false, "rewrite grafana/snapshot.png from the live run of TestDashboardAndAlertsOnLiveScaler")

// eventOnly are series that exist only around events the live run may not have at the end:
// counters that appear on their first event, which the run cannot cause (KWOK's pods run no
// code, so no worker is ever busy and no scale-down is held), and the busy gauges, exported
// only while a scale-down is pending.
var eventOnly = map[string]string{
	"headroom_scale_down_held_total":       "no worker is busy in this run (KWOK pods consume nothing)",
	"headroom_deletion_cost_patches_total": "no busy-aware scale-down happens in this run",
	"headroom_busy_workers":                "consumers are read only while a scale-down is pending",
	"headroom_idle_workers":                "consumers are read only while a scale-down is pending",
}

// buildScaler builds ./cmd/scaler and checks that it has the serve command.
func buildScaler(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "scaler")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/scaler")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/scaler: %v\n%s", err, out)
	}
	out, _ := exec.CommandContext(t.Context(), bin, "serve", "--help").CombinedOutput()
	if !strings.Contains(string(out), "--grpc-addr") {
		t.Skipf("skipping: cmd/scaler has no `serve` command yet:\n%s", out)
	}
	return bin
}

// so is one example ScaledObject as KEDA would present it to the scaler.
type so struct {
	ref    *pb.ScaledObjectRef
	target string
}

// TestDashboardAndAlertsOnLiveScaler runs the example workloads against a real `scaler serve`
// (real RabbitMQ, real control plane with KWOK nodes and scheduler), calls it as KEDA does
// and applies its answers as the HPA would, while a real Prometheus scrapes it with the
// alert rules loaded. Then every dashboard and alert query must run and return data, every
// metric they read must be in the live exposition, promtool must accept the exposition, and
// every rule must evaluate without error. The panels' data over the run is drawn as a PNG.
func TestDashboardAndAlertsOnLiveScaler(t *testing.T) {
	labtest.Short(t, "scaler serve with RabbitMQ, a control plane and Prometheus")
	c := realCluster(t)
	bin := buildScaler(t)
	ctx := t.Context()

	for i := range 3 {
		if err := c.kube.AddNode(ctx, lab.NodeSpec{Name: fmt.Sprintf("manifests-%d", i), CPU: "8", Memory: "16Gi"}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := c.run(ctx, ".", "apply", "-k", "examples"); err != nil {
		t.Fatalf("kubectl apply -k examples: %v\n%s", err, out)
	}
	var sos []so
	for _, o := range render(t, "examples") {
		if o.Kind() != "ScaledObject" {
			continue
		}
		s := as[scaledObject](t, o)
		sos = append(sos, so{
			ref:    &pb.ScaledObjectRef{Namespace: s.Metadata.Namespace, Name: s.Metadata.Name, ScalerMetadata: s.Spec.Triggers[0].Metadata},
			target: s.Spec.ScaleTargetRef.Name,
		})
	}

	rmq := labtest.RabbitMQ(t)
	admin := rmq.Admin()
	if err := admin.DeclareQueues(ctx, "/", "loads", "tasks.small", "tasks.large"); err != nil {
		t.Fatal(err)
	}
	for q, n := range map[string]int{"loads": 30, "tasks.small": 120, "tasks.large": 80} {
		if err := admin.Publish(ctx, "/", q, n); err != nil {
			t.Fatal(err)
		}
	}

	grpcPort, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", grpcPort), fmt.Sprintf("127.0.0.1:%d", httpPort)
	cmd := exec.Command(bin, "serve", "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--kubeconfig", c.kube.Kubeconfig, "--broker", "main="+rmq.ManagementURL(), "--refresh", "500ms",
		"--scaler-address", sos[0].ref.ScalerMetadata["scalerAddress"], "--log-format", "text")
	cmd.Env = append(os.Environ(), "HEADROOM_BROKER_MAIN_USERNAME=guest", "HEADROOM_BROKER_MAIN_PASSWORD=guest")
	proc, err := lab.Start("scaler", cmd, filepath.Join(t.TempDir(), "scaler.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(10 * time.Second) })
	err = lab.WaitFor(ctx, "scaler /readyz", time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		code, body, err := get(ctx, "http://"+httpAddr+"/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz %d: %s", code, body)
		}
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, proc.Tail(3000))
	}

	rulesFile, err := filepath.Abs(filepath.Join("prometheus", "headroom.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	prom := labtest.Prometheus(t, lab.PrometheusOptions{Targets: []string{httpAddr}, RuleFiles: []string{rulesFile}})
	start := time.Now()
	if err := prom.WaitScraped(ctx, time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, prom.Tail(3000))
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	// One call with bad metadata, as a misconfigured ScaledObject would make: the error panel
	// and the per-code RPC series must show it.
	bad := &pb.ScaledObjectRef{Namespace: "jobs", Name: "loader", ScalerMetadata: map[string]string{"broker": "main", "queue": "loads", "stepPods": "lots"}}
	if _, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: bad}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetMetrics with stepPods=lots: %v, want InvalidArgument", err)
	}
	// A second wave of work half-way, and a second bad call, so that the run shows a
	// scale-up after a drain and an error rate.
	wave := func() {
		for q, n := range map[string]int{"loads": 20, "tasks.small": 100} {
			if err := admin.Publish(ctx, "/", q, n); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: bad})
	}
	drive(t, c, rmq.ManagementURL(), client, sos, 50*time.Second, map[int]func(){25: wave})
	time.Sleep(3 * time.Second) // the last decisions reach a scrape
	end := time.Now()

	// The exposition: promtool's lint, and the names every query may use.
	_, exposition, err := get(ctx, "http://"+httpAddr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	promtool := labtest.Promtool(t)
	check := exec.CommandContext(ctx, promtool, "check", "metrics")
	check.Stdin = strings.NewReader(exposition)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	live, err := dashcheck.ExpositionNames(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	// Gauges exported only while something happens may be absent from this scrape; their
	// names are still checked against server.MetricNames (TestQueriesNameOnlyExportedMetrics).
	for m := range eventOnly {
		if !live[m] {
			t.Logf("%s not in this scrape: %s", m, eventOnly[m])
			live[m] = true
		}
	}
	ps := parse(t, allQueries(t))
	for _, u := range dashcheck.Unknown(ps, live, "up") {
		t.Errorf("live exposition: %s", u)
	}

	pc := dashcheck.Client{URL: prom.URL}
	for _, p := range ps {
		t.Run(p.Source, func(t *testing.T) {
			// An alert's condition holds only when it fires: what must exist is the data it reads.
			exprs := []string{dashcheck.Expand(p.Expr)}
			if p.Alert {
				exprs = p.Selectors
			}
			for _, e := range exprs {
				got, err := pc.Instant(ctx, e)
				if err != nil {
					t.Fatalf("%v", err)
				}
				if len(got) == 0 && !explained(t, pc, p) {
					t.Errorf("no data for %s", e)
				}
			}
		})
	}
	checkRuleHealth(t, prom.URL)

	img, data, err := dashcheck.Snapshot(ctx, pc, loadDashboard(t), dashcheck.SnapshotOptions{Start: start, End: end, Step: time.Second, RateInterval: "5s"})
	if err != nil {
		t.Fatal(err)
	}
	for _, pd := range data {
		points := 0
		for _, ss := range pd.Series {
			for _, s := range ss {
				points += len(s.Points)
			}
		}
		if points == 0 {
			t.Logf("snapshot: panel %q has no data over the run", pd.Panel.Title)
		}
	}
	out := filepath.Join(t.TempDir(), "snapshot.png")
	if *updateSnapshot {
		out = filepath.Join("grafana", "snapshot.png")
	}
	if err := os.WriteFile(out, img, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard snapshot of the run: %s", out)
}

// explained reports whether a query without data reads only counters that the run cannot
// create (eventOnly), and says so.
func explained(t *testing.T, pc dashcheck.Client, p dashcheck.Parsed) bool {
	t.Helper()
	for _, m := range p.Metrics {
		got, err := pc.Instant(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			if why, ok := eventOnly[m]; ok {
				t.Logf("%s: no %s series: %s", p.Source, m, why)
				continue
			}
			return false
		}
	}
	return true
}

// drive plays KEDA and the HPA for d: every second it asks the scaler for each ScaledObject's
// metric spec, activity and metric, sets the target's replicas to the answer, and lets the
// Ready pods consume messages. at[n] runs before the n-th second.
func drive(t *testing.T, c cluster, mgmtURL string, client pb.ExternalScalerClient, sos []so, d time.Duration, at map[int]func()) {
	t.Helper()
	ctx := t.Context()
	apps := c.kube.Client().AppsV1()
	consumed := map[string]int{}
	deadline := time.Now().Add(d)
	for tick := 0; time.Now().Before(deadline); tick++ {
		if f := at[tick]; f != nil {
			f()
		}
		for _, s := range sos {
			if _, err := client.GetMetricSpec(ctx, s.ref); err != nil {
				t.Fatalf("GetMetricSpec %s: %v", s.ref.Name, err)
			}
			if _, err := client.IsActive(ctx, s.ref); err != nil {
				t.Fatalf("IsActive %s: %v", s.ref.Name, err)
			}
			m, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: s.ref})
			if err != nil {
				t.Fatalf("GetMetrics %s: %v", s.ref.Name, err)
			}
			desired := int32(m.MetricValues[0].MetricValueFloat)
			scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: s.target, Namespace: s.ref.Namespace},
				Spec: autoscalingv1.ScaleSpec{Replicas: desired}}
			if _, err := apps.Deployments(s.ref.Namespace).UpdateScale(ctx, s.target, scale, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("scale %s to %d: %v", s.target, desired, err)
			}
			dep, err := apps.Deployments(s.ref.Namespace).Get(ctx, s.target, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// A loader takes about 4 s per message, a worker 0.5 s.
			ready := int(dep.Status.ReadyReplicas)
			queues, perPodSecond := []string{"loads"}, 0.25
			if s.target == "worker" {
				queues, perPodSecond = []string{"tasks.small", "tasks.large"}, 2
			}
			consumed[s.target] += int(float64(ready) * perPodSecond * 100)
			n := consumed[s.target] / 100
			consumed[s.target] %= 100
			for i, q := range queues {
				share := n / len(queues)
				if i == 0 {
					share += n % len(queues)
				}
				if err := consume(ctx, mgmtURL, q, share); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(time.Second)
	}
}

// consume takes n messages off a queue and acknowledges them, through the management API.
func consume(ctx context.Context, mgmtURL, queue string, n int) error {
	if n <= 0 {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"count": n, "ackmode": "ack_requeue_false", "encoding": "auto"})
	u := mgmtURL + "/api/queues/%2F/" + url.PathEscape(queue) + "/get"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("consume %d from %s: %w", n, queue, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("consume %d from %s: %s", n, queue, resp.Status)
	}
	return nil
}

func get(ctx context.Context, u string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// checkRuleHealth asks Prometheus how each alerting rule's last evaluation went.
func checkRuleHealth(t *testing.T, promURL string) {
	t.Helper()
	_, body, err := get(t.Context(), promURL+"/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("decode /api/v1/rules: %v\n%s", err, body)
	}
	n := 0
	for _, g := range r.Data.Groups {
		for _, rule := range g.Rules {
			n++
			if rule.Health != "ok" || rule.LastError != "" {
				t.Errorf("rule %s: health %q, last error %q", rule.Name, rule.Health, rule.LastError)
			}
		}
	}
	if want := len(loadRules(t).Queries()); n != want {
		t.Errorf("Prometheus loaded %d rules, want %d", n, want)
	}
}
