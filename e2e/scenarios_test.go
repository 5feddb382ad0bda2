package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/server"
)

// The nodes are DefaultNodes: 2 × 4 CPU. A worker requesting 1 CPU fits 8 times.
const fitOneCPU = 8

// Scenario 1: an idle queue takes the target to zero, and it stays there.
func TestIdleQueueScalesToZero(t *testing.T) {
	s := stackFor(t)
	ns := namespace(t, s)
	w := workload{Name: "worker", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-jobs", Replicas: 2, Max: 10,
		Push: true, Metadata: map[string]string{"idleAfter": "1s"}}
	deploy(t, s, w)
	rec := record(t, s, ns)
	zero := rec.waitFor(t, "scale to zero", 60*time.Second, func(x sample) bool { return x.spec["worker"] == 0 && x.running["worker"] == 0 })
	time.Sleep(8 * time.Second) // several polling intervals, HPA syncs and cooldowns
	for _, x := range rec.since(zero.when) {
		if x.spec["worker"] != 0 {
			t.Fatalf("the idle target left zero: %v\n%s", x, rec.dump())
		}
	}
}

// Scenario 2: the first message starts the first worker. Measured on the push path
// (external-push: StreamIsActive) and on KEDA's polling path with a 10 s polling interval.
func TestFirstMessageStartsAWorker(t *testing.T) {
	s := stackFor(t)
	for _, tc := range []struct {
		name    string
		push    bool
		polling int
	}{
		{name: "push", push: true, polling: 10},
		{name: "poll", push: false, polling: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t, s)
			w := workload{Name: "worker", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-jobs", Max: 10,
				Push: tc.push, PollingInterval: tc.polling}
			deploy(t, s, w)
			// Wait until KEDA has taken the ScaledObject over (its HPA exists) and a full polling
			// interval has passed at zero.
			err := waitHPA(t, s, ns, "worker")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(tc.polling) * time.Second)
			rec := record(t, s, ns)
			start := time.Now()
			publish(t, s, w.Queue, 1, 0)
			rec.waitFor(t, "first worker Running", 90*time.Second, func(x sample) bool { return x.running["worker"] >= 1 })
			t.Logf("%s path (pollingInterval %d s): first worker Running %.1f s after the first message", tc.name, tc.polling, time.Since(start).Seconds())
		})
	}
}

// waitHPA waits until KEDA created the HPA of a ScaledObject.
func waitHPA(t *testing.T, s *Stack, ns, name string) error {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := s.Kube.Client().AutoscalingV2().HorizontalPodAutoscalers(ns).Get(t.Context(), "keda-hpa-"+name, metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("KEDA did not create the HPA of %s/%s: %v", ns, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Scenario 3: a burst larger than the cluster. Replicas step up progressively, stop where the
// scheduler can place no more, and no pod is ever Pending-unschedulable; then the workers
// drain the queue and the target goes back to zero after the cooldown.
func TestBurstLargerThanTheCluster(t *testing.T) {
	s := stackFor(t)
	ns := namespace(t, s)
	w := workload{Name: "worker", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-jobs", Max: 20, Push: true,
		Metadata: map[string]string{"messagesPerReplica": "1", "stepPods": "2", "stepTimeout": "30s", "idleAfter": "1s"}}
	deploy(t, s, w)
	wk := workers(t, s, w, 3*time.Second)
	rec := record(t, s, ns)
	publish(t, s, w.Queue, 40, 0)
	rec.waitFor(t, "replicas reach what fits", 120*time.Second, func(x sample) bool { return x.running["worker"] == fitOneCPU })
	rec.waitFor(t, "drained and back to zero", 180*time.Second, func(x sample) bool { return x.spec["worker"] == 0 && x.running["worker"] == 0 })
	samples := rec.stop()

	for _, x := range samples {
		if x.unschedulable["worker"] > 0 {
			t.Errorf("Pending-unschedulable pods at %v\n%s", x, rec.dump())
			break
		}
	}
	seq := specSequence(samples, "worker")
	peak := slices.Index(seq, slices.Max(seq))
	ramp := seq[:peak+1]
	t.Logf("spec.replicas sequence: %v", seq)
	if got := slices.Max(seq); got != fitOneCPU {
		t.Errorf("peak replicas %d, want %d (what the two nodes fit)", got, fitOneCPU)
	}
	if !slices.IsSorted(ramp) || len(ramp) < 3 {
		t.Errorf("ramp %v: want at least two steps up from zero, never down", ramp)
	}
	if st := wk.Stats(); st.Acked != 40 {
		t.Errorf("workers acknowledged %d messages, want 40", st.Acked)
	}
}

// Scenario 4: two ScaledObjects compete for the same nodes. Their sum never exceeds what
// fits, and the room is shared by weight (3:1).
func TestCompetingScaledObjectsShareByWeight(t *testing.T) {
	s := stackFor(t)
	ns := namespace(t, s)
	heavy := workload{Name: "heavy", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-heavy", Max: 20, Push: true,
		Metadata: map[string]string{"messagesPerReplica": "1", "stepPods": "8", "weight": "3"}}
	light := workload{Name: "light", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-light", Max: 20, Push: true,
		Metadata: map[string]string{"messagesPerReplica": "1", "stepPods": "8", "weight": "1"}}
	deploy(t, s, heavy)
	deploy(t, s, light)
	rec := record(t, s, ns)
	// No consumers: the demand (20 each) stays far above what fits.
	publish(t, s, heavy.Queue, 20, 0)
	publish(t, s, light.Queue, 20, 0)
	rec.waitFor(t, "both running", 90*time.Second, func(x sample) bool { return x.running["heavy"] > 0 && x.running["light"] > 0 })
	settled := rec.settle(t, 8*time.Second, 90*time.Second)
	samples := rec.stop()
	for _, x := range samples {
		if sum := x.spec["heavy"] + x.spec["light"]; sum > fitOneCPU {
			t.Errorf("sum of replicas %d > %d that fit, at %v\n%s", sum, fitOneCPU, x, rec.dump())
			break
		}
		if n := x.unschedulable["heavy"] + x.unschedulable["light"]; n > 0 {
			t.Errorf("%d Pending-unschedulable pods at %v", n, x)
			break
		}
	}
	h, l := settled.spec["heavy"], settled.spec["light"]
	t.Logf("settled: heavy %d, light %d of %d that fit", h, l, fitOneCPU)
	// Weights 3:1 of 8 pods are 6 and 2; the room is used up, and no claim is starved.
	if h+l != fitOneCPU || h < 5 || h > 7 || l < 1 || l > 3 {
		t.Errorf("settled at heavy %d, light %d: want all %d pods placed, about 6 and 2 (weights 3:1)\n%s", h, l, fitOneCPU, rec.dump())
	}

	// Every replica's decisions page shows the answers the targets settled at, and why: the
	// room used up, the queues needing 20 each.
	want := fmt.Sprintf("heavy=%d capacity need 20, light=%d capacity need 20", h, l)
	for _, sc := range s.Scalers {
		var got string
		err := lab.WaitFor(t.Context(), "decisions page of "+sc.HTTPAddr, 15*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
			d, err := decisions(ctx, sc.HTTPAddr, ns)
			if err != nil {
				return err
			}
			var parts []string
			for _, a := range d.Decisions {
				parts = append(parts, fmt.Sprintf("%s=%d %s need %d", a.ScaledObject, a.Replicas, a.Limit, a.Need))
			}
			if got = strings.Join(parts, ", "); got != want {
				return fmt.Errorf("decisions %q, want %q", got, want)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// decisions reads a scaler replica's decisions page for namespace ns.
func decisions(ctx context.Context, httpAddr, ns string) (server.Decisions, error) {
	var d server.Decisions
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/decisions?format=json&namespace="+url.QueryEscape(ns), nil)
	if err != nil {
		return d, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("/decisions: %s", resp.Status)
	}
	return d, json.NewDecoder(resp.Body).Decode(&d)
}

// Scenario 5: busy workers survive scale-down. Half of the workers hold long messages when
// the queue empties; the scale-down removes only idle workers.
func TestBusyWorkersSurviveScaleDown(t *testing.T) {
	s := stackFor(t)
	ns := namespace(t, s)
	w := workload{Name: "worker", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-jobs", Max: 8, Push: true,
		Metadata: map[string]string{"messagesPerReplica": "1", "stepPods": "8", "idleAfter": "1s"}}
	deploy(t, s, w)
	wk := workers(t, s, w, time.Second)
	rec := record(t, s, ns)
	publish(t, s, w.Queue, 3, 25*time.Second)
	publish(t, s, w.Queue, 3, time.Second)
	rec.waitFor(t, "six workers", 90*time.Second, func(x sample) bool { return x.running["worker"] >= 6 })
	rec.waitFor(t, "scaled down to the busy workers", 60*time.Second, func(x sample) bool {
		return x.spec["worker"] < 6 && x.spec["worker"] > 0
	})
	busyAtScaleDown := wk.Stats().Busy
	rec.waitFor(t, "all done and back to zero", 120*time.Second, func(x sample) bool { return x.spec["worker"] == 0 })
	rec.stop()
	st := wk.Stats()
	t.Logf("busy at scale-down: %d; final: %+v", busyAtScaleDown, st)
	if st.KilledBusy != 0 {
		t.Errorf("%d busy workers were killed by a scale-down, want 0\n%s", st.KilledBusy, rec.dump())
	}
	if st.Acked != 6 {
		t.Errorf("acknowledged %d messages, want 6", st.Acked)
	}
}

// Scenario 6: the broker dies mid-run: replicas hold (no scale to zero) and KEDA's fallback
// engages; after the broker returns the scaler answers again. Then a scaler replica dies: the
// other answers the same, and the chain keeps working through the Service address.
func TestFailures(t *testing.T) {
	s := stackFor(t)
	ns := namespace(t, s)
	w := workload{Name: "worker", Namespace: ns, CPU: "1", Memory: "1Gi", Queue: ns + "-jobs", Max: 8, Push: true, Fallback: 3,
		Metadata: map[string]string{"messagesPerReplica": "1", "stepPods": "8"}}
	deploy(t, s, w)
	rec := record(t, s, ns)
	publish(t, s, w.Queue, 4, 0) // no consumers: the demand stays 4
	rec.waitFor(t, "four workers", 90*time.Second, func(x sample) bool { return x.running["worker"] == 4 })

	t.Run("broker killed", func(t *testing.T) {
		killed := time.Now()
		s.Rabbit.Kill()
		restarted := false
		defer func() {
			if !restarted {
				_ = s.Rabbit.Restart(context.Background())
			}
		}()
		if err := waitCondition(t, s, ns, "worker", "Fallback", metav1.ConditionTrue, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("KEDA fallback engaged %.1f s after the broker died", time.Since(killed).Seconds())
		time.Sleep(5 * time.Second)
		for _, x := range rec.since(killed) {
			if x.spec["worker"] != 4 {
				t.Errorf("replicas %d while the broker was down, want 4 held: %v", x.spec["worker"], x)
				break
			}
		}
		if err := s.Rabbit.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		restarted = true
		back := time.Now()
		if err := waitCondition(t, s, ns, "worker", "Fallback", metav1.ConditionFalse, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("KEDA left the fallback %.1f s after the broker was back", time.Since(back).Seconds())
		if x := rec.last(); x.spec["worker"] != 4 {
			t.Errorf("replicas %d after recovery, want 4", x.spec["worker"])
		}
	})

	t.Run("scaler replica killed", func(t *testing.T) {
		ref := &pb.ScaledObjectRef{Name: "worker", Namespace: ns,
			ScalerMetadata: map[string]string{"scalerAddress": s.ScalerAddress, "queue": w.Queue, "messagesPerReplica": "1", "stepPods": "8"}}
		// Both replicas read the same broker and cluster, so they give the same answer (each
		// may need one broker refresh after the broker came back).
		var history []string
		deadline := time.Now().Add(20 * time.Second)
		for {
			var answers []string
			for _, sc := range s.Scalers {
				v, err := metricValue(t.Context(), sc.GRPCAddr, ref)
				if err != nil {
					answers = append(answers, "error: "+err.Error())
				} else {
					answers = append(answers, fmt.Sprint(v))
				}
			}
			history = append(history, fmt.Sprint(answers))
			if answers[0] == "4" && answers[1] == "4" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the replicas never both answered 4 within 20 s; answers over time:\n%s", strings.Join(history, "\n"))
			}
			time.Sleep(250 * time.Millisecond)
		}
		if len(history) > 1 {
			t.Logf("answers before they agreed: %v", history)
		}
		s.Scalers[0].Process.Kill()
		defer func() {
			if err := s.Scalers[0].Start(context.Background()); err != nil {
				t.Errorf("restart scaler replica 0: %v", err)
			}
		}()
		// The chain keeps its answer through the Service address: KEDA reconnects to the
		// survivor, and the ScaledObject stays Ready without falling back.
		time.Sleep(8 * time.Second)
		if err := waitCondition(t, s, ns, "worker", "Fallback", metav1.ConditionFalse, 5*time.Second); err != nil {
			t.Error(err)
		}
		if x := rec.last(); x.spec["worker"] != 4 {
			t.Errorf("replicas %d after a scaler replica died, want 4", x.spec["worker"])
		}
	})
}

// metricValue asks one scaler replica directly for a ScaledObject's metric value.
func metricValue(ctx context.Context, addr string, ref *pb.ScaledObjectRef) (float64, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	resp, err := pb.NewExternalScalerClient(conn).GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "x"})
	if err != nil {
		return 0, err
	}
	if len(resp.MetricValues) != 1 {
		return 0, fmt.Errorf("%d metric values", len(resp.MetricValues))
	}
	return resp.MetricValues[0].MetricValueFloat, nil
}

// waitCondition waits until a ScaledObject's status condition has the wanted status.
func waitCondition(t *testing.T, s *Stack, ns, name, condType string, want metav1.ConditionStatus, timeout time.Duration) error {
	t.Helper()
	d := dynamicClient(t, s).Resource(scaledObjectsGVR).Namespace(ns)
	deadline := time.Now().Add(timeout)
	last := "no status"
	for {
		so, err := d.Get(t.Context(), name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(so.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == condType {
					last = fmt.Sprintf("%v (%v: %v)", m["status"], m["reason"], m["message"])
					if m["status"] == string(want) {
						return nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ScaledObject %s/%s condition %s: want %s within %v, last %s", ns, name, condType, want, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
