package capacity_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

var (
	seedFlag   = flag.Uint64("capacity.seed", 0, "seed of the randomised scheduler layouts (0: from the clock)")
	roundsFlag = flag.Int("capacity.rounds", 3, "number of randomised scheduler layouts")
)

// TestFitMatchesScheduler takes the real kube-scheduler as ground truth: for random node and
// pod layouts it asks Fit, creates Fit+1 pods of the footprint and expects the scheduler to
// place exactly Fit of them and to leave the last one Pending-unschedulable.
func TestFitMatchesScheduler(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	c := startCluster(t, k, clusterOpts{})
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -capacity.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := range *roundsFlag {
		t.Run(fmt.Sprintf("layout%d", round), func(t *testing.T) {
			groundTruth(t, k, c, rng, fmt.Sprintf("truth%d-%d", seed%100000, round))
		})
	}
}

func groundTruth(t *testing.T, k *lab.Kube, c *capacity.Cluster, rng *rand.Rand, name string) {
	g := newGroup(t, k, name)
	taint := corev1.Taint{Key: "headroom.test/dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}
	tolerate := rng.IntN(2) == 0
	var tolerations []corev1.Toleration
	if tolerate {
		tolerations = []corev1.Toleration{{Key: taint.Key, Operator: corev1.TolerationOpEqual, Value: taint.Value, Effect: taint.Effect}}
	}

	type layoutNode struct {
		name          string
		cpu, mem      int64 // millicores, MiB
		free          [2]int64
		pods, used    int
		taint, cordon bool
	}
	nodes := make([]layoutNode, 2+rng.IntN(3))
	for i := range nodes {
		n := &nodes[i]
		n.name = fmt.Sprintf("n%d", i)
		n.cpu = 1000 + 250*rng.Int64N(29) // 1–8 cores
		n.mem = 1024 + 256*rng.Int64N(61) // 1–16 GiB
		n.pods = 4 + rng.IntN(13)         // 4–16 slots
		n.taint, n.cordon = rng.IntN(5) == 0, rng.IntN(6) == 0
		spec := lab.NodeSpec{Name: n.name, CPU: fmt.Sprintf("%dm", n.cpu), Memory: fmt.Sprintf("%dMi", n.mem), Pods: n.pods, Unschedulable: n.cordon}
		if n.taint {
			spec.Taints = []corev1.Taint{taint}
		}
		n.name = g.addNode(spec)
		n.free = [2]int64{n.cpu, n.mem}
		t.Logf("node %s: %dm %dMi %d slots tainted=%v cordoned=%v", n.name, n.cpu, n.mem, n.pods, n.taint, n.cordon)
	}
	// Pre-existing pods, bound directly and kept within each node's room.
	existing := 0
	for i := range nodes {
		n := &nodes[i]
		for j := range rng.IntN(4) {
			ps := podSpec{
				name: fmt.Sprintf("pre-%d-%d", i, j), node: n.name, tolerations: tolerations, sidecars: rng.IntN(3) == 0,
				cpu: fmt.Sprintf("%dm", 200+50*rng.Int64N(17)), mem: fmt.Sprintf("%dMi", 128+64*rng.Int64N(31)),
			}
			req, _ := capacity.TemplateFootprint(&g.pod(ps).Spec)
			if req.MilliCPU > n.free[0] || req.Memory/mi > n.free[1] || n.used >= n.pods {
				continue
			}
			n.free[0] -= req.MilliCPU
			n.free[1] -= req.Memory / mi
			n.used++
			existing++
			g.createPod(ps)
		}
	}
	probe := podSpec{
		labels: map[string]string{"role": "probe"}, tolerations: tolerations, sidecars: rng.IntN(2) == 0,
		cpu: fmt.Sprintf("%dm", 250+50*rng.Int64N(26)), mem: fmt.Sprintf("%dMi", 256+64*rng.Int64N(45)),
	}
	// The footprint is computed from the pod spec, as Target does from a template.
	fp, _ := capacity.TemplateFootprint(&g.pod(probe).Spec)
	cons := g.constraints()
	if tolerate {
		cons.Tolerations = []capacity.Toleration{{Key: taint.Key, Operator: "Equal", Value: taint.Value, Effect: string(taint.Effect)}}
	}
	eventually(t, "cache holds the layout", func() error {
		pods := 0
		for _, n := range nodes {
			got, ok := nodeByName(c, n.name)
			if !ok {
				return fmt.Errorf("node %s not in cache", n.name)
			}
			pods += int(got.Requested.Pods)
		}
		if pods != existing {
			return fmt.Errorf("%d pods in cache, want %d", pods, existing)
		}
		return nil
	})
	fit := c.Fit(fp, cons, capacity.Resources{})
	t.Logf("footprint %dm %dMi sidecars=%v tolerate=%v: Fit = %d (%d pods already bound)", fp.MilliCPU, fp.Memory/mi, probe.sidecars, tolerate, fit, existing)

	for i := range fit + 1 {
		probe.name = fmt.Sprintf("w-%03d", i)
		g.createPod(probe)
	}
	var bound, unschedulable int
	count := func(ctx context.Context) error {
		list, err := g.c.CoreV1().Pods(g.name).List(ctx, metav1.ListOptions{LabelSelector: "role=probe"})
		if err != nil {
			return err
		}
		bound, unschedulable = 0, 0
		for _, p := range list.Items {
			if p.Spec.NodeName != "" {
				bound++
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
					unschedulable++
				}
			}
		}
		if bound+unschedulable != fit+1 {
			return fmt.Errorf("%d bound, %d unschedulable of %d", bound, unschedulable, fit+1)
		}
		return nil
	}
	if err := lab.WaitFor(t.Context(), "scheduler decisions", 60*time.Second, 200*time.Millisecond, count); err != nil {
		t.Fatal(err)
	}
	// Let a retry of the unschedulable pods happen, then count again.
	time.Sleep(2 * time.Second)
	if err := count(t.Context()); err != nil {
		t.Fatal(err)
	}
	if bound != fit || unschedulable != 1 {
		t.Errorf("scheduler placed %d and left %d unschedulable; Fit said %d fit (want %d placed, 1 unschedulable)", bound, unschedulable, fit, fit)
	}
	eventually(t, "no room left", wantFit(c, fp, cons, 0))
}
