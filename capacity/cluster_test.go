package capacity_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(labtest.Main(m),
		// client-go and klog keep process-wide helpers: the klog flush daemon and idle
		// keep-alive connections of the shared transport cache.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Type).updateUnfinishedWorkLoop"),
	)
}

// kube is the control plane every test of this package shares. Tests isolate themselves by
// namespace and by a node label that their constraints select.
func kube(t *testing.T) *lab.Kube {
	t.Helper()
	return labtest.SharedKube(t, lab.KubeOptions{MetricsServer: true})
}

const testLabel = "headroom.test/group"

// group is a test's own set of nodes and namespace.
type group struct {
	t    *testing.T
	k    *lab.Kube
	c    kubernetes.Interface
	name string // label value, namespace and node-name prefix
}

func newGroup(t *testing.T, k *lab.Kube, name string) *group {
	t.Helper()
	g := &group{t: t, k: k, c: k.Client(), name: name}
	ctx := t.Context()
	if _, err := g.c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	// Pods are admitted only once the namespace's default ServiceAccount exists.
	eventually(t, "default service account in "+name, func() error {
		_, err := g.c.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	t.Cleanup(func() {
		ctx := context.Background()
		_ = g.c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		_ = g.c.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: testLabel + "=" + name})
	})
	return g
}

// constraints select this group's nodes only.
func (g *group) constraints() capacity.Constraints {
	return capacity.Constraints{NodeSelector: map[string]string{testLabel: g.name}}
}

func (g *group) addNode(spec lab.NodeSpec) string {
	g.t.Helper()
	spec.Name = g.name + "-" + spec.Name
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels[testLabel] = g.name
	if err := g.k.AddNode(g.t.Context(), spec); err != nil {
		g.t.Fatalf("add node: %v", err)
	}
	return spec.Name
}

type podSpec struct {
	name        string
	cpu, mem    string
	node        string // bind directly, bypassing the scheduler
	labels      map[string]string
	annotations map[string]string
	tolerations []corev1.Toleration
	// sidecars: cpu and mem are split between a main container and a restartable init
	// container (a sidecar), and a plain init container asks for 200m more CPU than the
	// total, so the pod's request is the scheduler's max(init, sidecar + main).
	sidecars bool
}

func (g *group) pod(p podSpec) *corev1.Pod {
	res := corev1.ResourceList{}
	if p.cpu != "" {
		res[corev1.ResourceCPU] = resource.MustParse(p.cpu)
	}
	if p.mem != "" {
		res[corev1.ResourceMemory] = resource.MustParse(p.mem)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: g.name, Labels: p.labels, Annotations: p.annotations},
		Spec: corev1.PodSpec{
			NodeName:     p.node,
			NodeSelector: map[string]string{testLabel: g.name},
			Tolerations:  p.tolerations,
			Containers:   []corev1.Container{{Name: "w", Image: "worker", Resources: corev1.ResourceRequirements{Requests: res}}},
		},
	}
	if p.sidecars {
		cpu, mem := res[corev1.ResourceCPU], res[corev1.ResourceMemory]
		side := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
		main := corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(cpu.MilliValue()-100, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(mem.Value()-64*mi, resource.BinarySI),
		}
		init := corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(cpu.MilliValue()+200, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(mem.Value()/2, resource.BinarySI),
		}
		always := corev1.ContainerRestartPolicyAlways
		pod.Spec.Containers[0].Resources.Requests = main
		pod.Spec.InitContainers = []corev1.Container{
			{Name: "init", Image: "init", Resources: corev1.ResourceRequirements{Requests: init}},
			{Name: "sidecar", Image: "sidecar", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: side}},
		}
	}
	return pod
}

func (g *group) createPod(p podSpec) {
	g.t.Helper()
	if _, err := g.c.CoreV1().Pods(g.name).Create(g.t.Context(), g.pod(p), metav1.CreateOptions{}); err != nil {
		g.t.Fatalf("create pod %s: %v", p.name, err)
	}
}

func (g *group) deletePod(name string) {
	g.t.Helper()
	zero := int64(0)
	if err := g.c.CoreV1().Pods(g.name).Delete(g.t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		g.t.Fatalf("delete pod %s: %v", name, err)
	}
}

type clusterOpts struct {
	metrics   bool
	dynamic   bool
	addresses []string
	crdEvery  time.Duration
}

func startCluster(t *testing.T, k *lab.Kube, o clusterOpts) *capacity.Cluster {
	t.Helper()
	cfg := k.RESTConfig()
	opts := capacity.Options{Client: k.Client(), ScalerAddresses: o.addresses, CRDInterval: o.crdEvery}
	if o.metrics {
		mc, err := metricsclient.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		opts.Metrics, opts.MetricsInterval = mc, time.Second
	}
	if o.dynamic {
		dc, err := dynamic.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		opts.Dynamic = dc
	}
	c, err := capacity.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(c.Close)
	if c.Synced() {
		// Synced may already be true on a fast machine; it must be by the end of WaitForSync.
		t.Log("caches synced before WaitForSync")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.WaitForSync(ctx); err != nil {
		t.Fatalf("WaitForSync: %v", err)
	}
	return c
}

// eventually retries check for up to 30 s: the caches follow the API server asynchronously.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	if err := lab.WaitFor(t.Context(), what, 30*time.Second, 50*time.Millisecond, func(context.Context) error { return check() }); err != nil {
		t.Fatal(err)
	}
}

func wantFit(c *capacity.Cluster, fp capacity.Footprint, cons capacity.Constraints, want int) func() error {
	return func() error {
		if got := c.Fit(fp, cons, capacity.Resources{}); got != want {
			return fmt.Errorf("Fit(%+v) = %d, want %d", fp, got, want)
		}
		return nil
	}
}

func nodeByName(c *capacity.Cluster, name string) (capacity.Node, bool) {
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n, true
		}
	}
	return capacity.Node{}, false
}

const mi = int64(1) << 20

func TestClusterFollowsPods(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "follow")
	c := startCluster(t, k, clusterOpts{})

	big := g.addNode(lab.NodeSpec{Name: "big", CPU: "8", Memory: "16Gi", Pods: 20})
	small := g.addNode(lab.NodeSpec{Name: "small", CPU: "2", Memory: "4Gi", Pods: 3})
	g.addNode(lab.NodeSpec{Name: "cordoned", CPU: "16", Memory: "32Gi", Unschedulable: true})
	g.addNode(lab.NodeSpec{Name: "tainted", CPU: "16", Memory: "32Gi",
		Taints: []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}})

	g.createPod(podSpec{name: "a", cpu: "1", mem: "2Gi", node: big})
	g.createPod(podSpec{name: "b", cpu: "1500m", mem: "1Gi", node: big})
	g.createPod(podSpec{name: "c", cpu: "500m", mem: "512Mi", node: small})
	g.createPod(podSpec{name: "d", node: small}) // no requests: holds a pod slot only

	eventually(t, "requests of big", func() error {
		n, ok := nodeByName(c, big)
		want := capacity.Resources{MilliCPU: 2500, Memory: 3 << 30, Pods: 2}
		if !ok || n.Requested != want {
			return fmt.Errorf("big requested = %+v, want %+v", n.Requested, want)
		}
		if free := n.Free(capacity.Resources{}); free != (capacity.Resources{MilliCPU: 5500, Memory: 13 << 30, Pods: 18}) {
			return fmt.Errorf("big free = %+v", free)
		}
		return nil
	})
	eventually(t, "requests of small", func() error {
		n, _ := nodeByName(c, small)
		if want := (capacity.Resources{MilliCPU: 500, Memory: 512 * mi, Pods: 2}); n.Requested != want {
			return fmt.Errorf("small requested = %+v, want %+v", n.Requested, want)
		}
		return nil
	})

	cons := g.constraints()
	tolerant := cons
	tolerant.Tolerations = []capacity.Toleration{{Key: "dedicated", Value: "db", Effect: capacity.EffectNoSchedule}}
	tests := []struct {
		name string
		fp   capacity.Footprint
		cons capacity.Constraints
		want int
	}{
		// big: 5500m/13Gi/18 slots; small: 1500m/3.5Gi/1 slot; cordoned never; tainted only tolerated.
		{name: "1 cpu 1Gi", fp: capacity.Footprint{MilliCPU: 1000, Memory: 1 << 30}, cons: cons, want: 5 + 1},
		{name: "250m 4Gi", fp: capacity.Footprint{MilliCPU: 250, Memory: 4 << 30}, cons: cons, want: 3 + 0},
		{name: "100m 64Mi slot bound", fp: capacity.Footprint{MilliCPU: 100, Memory: 64 * mi}, cons: cons, want: 18 + 1},
		{name: "tolerating the taint", fp: capacity.Footprint{MilliCPU: 1000, Memory: 1 << 30}, cons: tolerant, want: 5 + 1 + 16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := wantFit(c, tc.fp, tc.cons, tc.want)(); err != nil {
				t.Error(err)
			}
		})
	}

	fp := capacity.Footprint{MilliCPU: 1000, Memory: 1 << 30}
	g.deletePod("b") // big: 7000m free → 7
	eventually(t, "fit after delete", wantFit(c, fp, cons, 7+1))
	g.createPod(podSpec{name: "e", cpu: "3", mem: "1Gi", node: big}) // big: 4000m free → 4
	eventually(t, "fit after add", wantFit(c, fp, cons, 4+1))
	// Pod slots: small has 3; c, f and g fill them once d is gone. big: 20 − 2 pods.
	g.deletePod("d")
	g.createPod(podSpec{name: "f", cpu: "200m", mem: "100Mi", node: small})
	g.createPod(podSpec{name: "g", cpu: "200m", mem: "100Mi", node: small})
	eventually(t, "fit when small runs out of pod slots", wantFit(c, capacity.Footprint{MilliCPU: 100, Memory: 64 * mi}, cons, 18+0))
}

// A target's pods are those its selector matches in its namespace, whether the selector
// names a label (read through the label index) or only expressions (the namespace scanned).
func TestTargetPodsBySelector(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "selectors")
	other := newGroup(t, k, "selectors-other")
	c := startCluster(t, k, clusterOpts{})
	for name, l := range map[string]map[string]string{
		"p1": {"app": "a", "tier": "x"}, "p2": {"app": "a", "tier": "y"}, "p3": {"app": "b", "tier": "x"}, "p4": {"app": "c"},
	} {
		g.createPod(podSpec{name: name, labels: l})
	}
	other.createPod(podSpec{name: "q1", labels: map[string]string{"app": "a", "tier": "x"}})

	tests := []struct {
		name     string
		selector metav1.LabelSelector
		template map[string]string
		want     []string
	}{
		{name: "one label", selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			template: map[string]string{"app": "a"}, want: []string{"p1", "p2"}},
		{name: "two labels", selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a", "tier": "x"}},
			template: map[string]string{"app": "a", "tier": "x"}, want: []string{"p1"}},
		{name: "in two values", selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
			template: map[string]string{"app": "a"}, want: []string{"p1", "p2", "p3"}},
		{name: "in one value", selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"b"}}}},
			template: map[string]string{"app": "b"}, want: []string{"p3"}},
		{name: "exists", selector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}},
			template: map[string]string{"tier": "x"}, want: []string{"p1", "p2", "p3"}},
		{name: "label and not in", selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"y"}}}},
			template: map[string]string{"app": "a", "tier": "x"}, want: []string{"p1"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("sel-%d", i)
			dep := deployment(g.name, name, 0, tc.template, g.pod(podSpec{labels: tc.template}))
			dep.Spec.Selector = &tc.selector
			if _, err := g.c.AppsV1().Deployments(g.name).Create(t.Context(), dep, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			ref := capacity.TargetRef{Kind: "Deployment", Name: name, Namespace: g.name, APIVersion: "apps/v1"}
			eventually(t, "pods of "+name, func() error {
				st, err := c.Target(t.Context(), ref)
				if err != nil {
					return err
				}
				var got []string
				for _, p := range st.Pods {
					got = append(got, p.Name)
				}
				if !slices.Equal(got, tc.want) {
					return fmt.Errorf("pods %v, want %v", got, tc.want)
				}
				return nil
			})
		})
	}
}

// A target's pods carry their creation time and whether they are being deleted: the step
// rule counts its wait from the youngest pod that is not Ready, leaving terminating ones out.
func TestTargetPodsCreatedAndTerminating(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "ages")
	c := startCluster(t, k, clusterOpts{})
	g.addNode(lab.NodeSpec{Name: "n1", CPU: "4", Memory: "4Gi"})
	start := time.Now().Truncate(time.Second) // creationTimestamp has whole seconds

	labels := map[string]string{"app": "aged"}
	dep := deployment(g.name, "aged", 2, labels, g.pod(podSpec{cpu: "100m", mem: "64Mi", labels: labels}))
	if _, err := g.c.AppsV1().Deployments(g.name).Create(t.Context(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := capacity.TargetRef{Kind: "Deployment", Name: "aged", Namespace: g.name, APIVersion: "apps/v1"}
	var st capacity.TargetState
	eventually(t, "2 pods", func() error {
		var err error
		if st, err = c.Target(t.Context(), ref); err != nil {
			return err
		}
		if len(st.Pods) != 2 {
			return fmt.Errorf("%d pods, want 2", len(st.Pods))
		}
		return nil
	})
	for _, p := range st.Pods {
		if p.Created.Before(start) || p.Created.After(time.Now()) {
			t.Errorf("pod %s Created = %v, want between %v and now", p.Name, p.Created, start)
		}
		if p.Terminating {
			t.Errorf("pod %s Terminating, want not", p.Name)
		}
	}

	// A finalizer keeps the deleted pod in the cache, terminating, until it is removed.
	victim := st.Pods[0].Name
	const finalizer = "headroom.test/hold"
	patch := func(body string) {
		t.Helper()
		if _, err := g.c.CoreV1().Pods(g.name).Patch(t.Context(), victim, types.MergePatchType, []byte(body), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"metadata":{"finalizers":["` + finalizer + `"]}}`)
	t.Cleanup(func() {
		_, _ = g.c.CoreV1().Pods(g.name).Patch(context.Background(), victim, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	if err := g.c.CoreV1().Pods(g.name).Delete(t.Context(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, victim+" terminating", func() error {
		st, err := c.Target(t.Context(), ref)
		if err != nil {
			return err
		}
		for _, p := range st.Pods {
			if p.Name == victim {
				if !p.Terminating {
					return fmt.Errorf("%s not terminating yet", victim)
				}
				return nil
			}
		}
		return fmt.Errorf("%s gone from the cache while its finalizer holds it", victim)
	})
}

func TestTargetDeploymentPendingUnschedulable(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "pending")
	c := startCluster(t, k, clusterOpts{})
	g.addNode(lab.NodeSpec{Name: "n1", CPU: "2", Memory: "4Gi"})

	labels := map[string]string{"app": "worker"}
	tmpl := g.pod(podSpec{cpu: "500m", mem: "256Mi", labels: labels})
	tmpl.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	tmpl.Spec.Tolerations = []corev1.Toleration{{Key: "spot", Operator: corev1.TolerationOpExists}}
	dep := deployment(g.name, "worker", 6, labels, tmpl)
	if _, err := g.c.AppsV1().Deployments(g.name).Create(t.Context(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := capacity.TargetRef{Kind: "Deployment", Name: "worker", Namespace: g.name, APIVersion: "apps/v1"}
	var st capacity.TargetState
	eventually(t, "4 ready and 2 pending-unschedulable", func() error {
		var err error
		if st, err = c.Target(t.Context(), ref); err != nil {
			return err
		}
		if st.Spec != 6 || st.Ready != 4 || st.PendingUnschedulable != 2 || len(st.Pods) != 6 {
			return fmt.Errorf("spec %d ready %d pending %d pods %d, want 6 4 2 6", st.Spec, st.Ready, st.PendingUnschedulable, len(st.Pods))
		}
		return nil
	})
	if want := (capacity.Footprint{MilliCPU: 500, Memory: 256 * mi}); st.Footprint != want {
		t.Errorf("Footprint = %+v, want %+v", st.Footprint, want)
	}
	if want := (capacity.Footprint{MilliCPU: 1000, Memory: 1 << 30}); st.Limits != want {
		t.Errorf("Limits = %+v, want %+v", st.Limits, want)
	}
	if got := st.Constraints.NodeSelector[testLabel]; got != g.name {
		t.Errorf("Constraints.NodeSelector[%s] = %q, want %q", testLabel, got, g.name)
	}
	if len(st.Constraints.Tolerations) != 1 || st.Constraints.Tolerations[0].Key != "spot" {
		t.Errorf("Constraints.Tolerations = %+v, want the spot toleration", st.Constraints.Tolerations)
	}
	running := 0
	for _, p := range st.Pods {
		if p.Node != "" {
			running++
			if !strings.HasPrefix(p.IP, "127.16.") {
				t.Errorf("pod %s IP %q, want one in 127.16.0.0/16", p.Name, p.IP)
			}
		}
	}
	if running != 4 {
		t.Errorf("pods on a node = %d, want 4", running)
	}
	if got := c.Fit(st.Footprint, st.Constraints, capacity.Resources{}); got != 0 {
		t.Errorf("Fit = %d with pending pods on a full node, want 0", got)
	}

	// Scale down: the pending pods go, nothing is left pending.
	scale, err := g.c.AppsV1().Deployments(g.name).GetScale(t.Context(), "worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 2
	if _, err := g.c.AppsV1().Deployments(g.name).UpdateScale(t.Context(), "worker", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "scaled down to 2", func() error {
		st, err := c.Target(t.Context(), ref)
		if err != nil {
			return err
		}
		if st.Spec != 2 || st.PendingUnschedulable != 0 {
			return fmt.Errorf("spec %d pending %d, want 2 0", st.Spec, st.PendingUnschedulable)
		}
		return nil
	})
	eventually(t, "room for 2 more after scale-down", wantFit(c, st.Footprint, st.Constraints, 2))

	// A new template is read again: what was derived from the old one is not kept.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error { // the controllers write it too
		d, err := g.c.AppsV1().Deployments(g.name).Get(t.Context(), "worker", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("250m")
		_, err = g.c.AppsV1().Deployments(g.name).Update(t.Context(), d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new template's footprint", func() error {
		st, err := c.Target(t.Context(), ref)
		if err != nil {
			return err
		}
		if want := (capacity.Footprint{MilliCPU: 250, Memory: 256 * mi}); st.Footprint != want {
			return fmt.Errorf("Footprint = %+v, want %+v", st.Footprint, want)
		}
		return nil
	})
	// A deleted workload is not found, whatever was derived from it before.
	if err := g.c.AppsV1().Deployments(g.name).Delete(t.Context(), "worker", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted workload not found", func() error {
		if _, err := c.Target(t.Context(), ref); !errors.Is(err, capacity.ErrNotFound) {
			return fmt.Errorf("Target error = %v, want %v", err, capacity.ErrNotFound)
		}
		return nil
	})
}

func TestTargetErrors(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "targeterr")
	c := startCluster(t, k, clusterOpts{dynamic: true})
	if _, err := g.c.CoreV1().ConfigMaps(g.name).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ref     capacity.TargetRef
		wantErr error
		wantIn  string
	}{
		{name: "missing deployment", ref: capacity.TargetRef{Kind: "Deployment", Name: "nope", Namespace: g.name}, wantErr: capacity.ErrNotFound},
		{name: "missing statefulset", ref: capacity.TargetRef{Kind: "StatefulSet", Name: "nope", Namespace: g.name, APIVersion: "apps/v1"}, wantErr: capacity.ErrNotFound},
		{name: "kind without scale", ref: capacity.TargetRef{Kind: "ConfigMap", Name: "cm", Namespace: g.name, APIVersion: "v1"}, wantErr: capacity.ErrUnsupportedKind, wantIn: "ConfigMap"},
		{name: "unknown kind", ref: capacity.TargetRef{Kind: "Rollout", Name: "r", Namespace: g.name, APIVersion: "argoproj.io/v1alpha1"}, wantErr: capacity.ErrUnsupportedKind, wantIn: "Rollout"},
		{name: "missing replicaset via scale", ref: capacity.TargetRef{Kind: "ReplicaSet", Name: "nope", Namespace: g.name, APIVersion: "apps/v1"}, wantErr: capacity.ErrNotFound},
		{name: "no name", ref: capacity.TargetRef{Kind: "Deployment", Namespace: g.name}, wantIn: "name are required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Target(t.Context(), tc.ref)
			if err == nil {
				t.Fatal("Target: no error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Target error = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("Target error = %v, want it to name %q", err, tc.wantIn)
			}
		})
	}
}

func TestTargetViaScaleSubresource(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "viascale")
	c := startCluster(t, k, clusterOpts{dynamic: true})
	g.addNode(lab.NodeSpec{Name: "n1", CPU: "1", Memory: "4Gi"})
	labels := map[string]string{"app": "rs"}
	rs := replicaSet(g.name, "rs", 3, labels, g.pod(podSpec{cpu: "400m", mem: "128Mi", labels: labels}))
	if _, err := g.c.AppsV1().ReplicaSets(g.name).Create(t.Context(), rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := capacity.TargetRef{Kind: "ReplicaSet", Name: "rs", Namespace: g.name, APIVersion: "apps/v1"}
	eventually(t, "replicaset state through /scale", func() error {
		st, err := c.Target(t.Context(), ref)
		if err != nil {
			return err
		}
		if st.Spec != 3 || st.Ready != 2 || st.PendingUnschedulable != 1 || st.Footprint.MilliCPU != 400 {
			return fmt.Errorf("spec %d ready %d pending %d footprint %+v, want 3 2 1 400m", st.Spec, st.Ready, st.PendingUnschedulable, st.Footprint)
		}
		return nil
	})
}

func TestUsageAboveRequestsLowersRoom(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "usage")
	c := startCluster(t, k, clusterOpts{metrics: true})
	n := g.addNode(lab.NodeSpec{Name: "n1", CPU: "4", Memory: "8Gi"})
	fp := capacity.Footprint{MilliCPU: 500, Memory: 256 * mi}
	cons := g.constraints()

	g.createPod(podSpec{name: "quiet", cpu: "500m", mem: "512Mi", node: n,
		annotations: map[string]string{"kwok.x-k8s.io/usage-cpu": "100m", "kwok.x-k8s.io/usage-memory": "100Mi"}})
	eventually(t, "room by requests", wantFit(c, fp, cons, 7))

	g.createPod(podSpec{name: "hungry", cpu: "500m", mem: "512Mi", node: n,
		annotations: map[string]string{"kwok.x-k8s.io/usage-cpu": "2500m", "kwok.x-k8s.io/usage-memory": "1Gi"}})
	// Requests say 3000m free (6 more); usage says about 2600m used, 1400m free (2 more).
	if err := lab.WaitFor(t.Context(), "usage from metrics.k8s.io", 90*time.Second, time.Second, func(ctx context.Context) error {
		node, ok := nodeByName(c, n)
		if !ok || !node.UsedKnown {
			return fmt.Errorf("usage of %s not known yet", n)
		}
		if node.Used.MilliCPU < 2500 {
			return fmt.Errorf("used cpu %dm, want at least 2500m", node.Used.MilliCPU)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	node, _ := nodeByName(c, n)
	t.Logf("node %s: requested %+v used %+v", n, node.Requested, node.Used)
	want := int((4000 - max(node.Used.MilliCPU, node.Requested.MilliCPU)) / fp.MilliCPU)
	if got := c.Fit(fp, cons, capacity.Resources{}); got != want || got >= 6 {
		t.Errorf("Fit = %d, want %d (fewer than the 6 requests allow)", got, want)
	}
}

func TestAPIServerRestart(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "restart")
	c := startCluster(t, k, clusterOpts{})
	n := g.addNode(lab.NodeSpec{Name: "n1", CPU: "4", Memory: "8Gi"})
	fp := capacity.Footprint{MilliCPU: 1000, Memory: 1 << 30}
	cons := g.constraints()
	g.createPod(podSpec{name: "a", cpu: "1", mem: "1Gi", node: n})
	eventually(t, "fit before restart", wantFit(c, fp, cons, 3))

	if err := k.RestartAPIServer(t.Context()); err != nil {
		t.Fatalf("RestartAPIServer: %v", err)
	}
	// Changes made after the restart reach the caches through resumed watches.
	eventually(t, "create after restart", func() error {
		_, err := g.c.CoreV1().Pods(g.name).Create(t.Context(), g.pod(podSpec{name: "b", cpu: "2", mem: "1Gi", node: n}), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	eventually(t, "fit after restart", wantFit(c, fp, cons, 1))
	g.deletePod("a")
	eventually(t, "fit after delete after restart", wantFit(c, fp, cons, 2))
	if !c.Synced() {
		t.Error("Synced = false after the API server came back")
	}
}

func deployment(ns, name string, replicas int32, labels map[string]string, pod *corev1.Pod) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}
}

func replicaSet(ns, name string, replicas int32, labels map[string]string, pod *corev1.Pod) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec},
		},
	}
}

// Version moves when something a fit or a target reads changes, and not for the writes that
// change nothing of it: node heartbeats and workload status bookkeeping arrive every few
// seconds per object, and each version change costs the scaler a planning pass over every
// ScaledObject.
func TestVersionIgnoresBookkeeping(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "version")
	c := startCluster(t, k, clusterOpts{})
	node := g.addNode(lab.NodeSpec{Name: "n1", CPU: "2", Memory: "4Gi"})
	labels := map[string]string{"app": "idle"}
	if _, err := g.c.AppsV1().Deployments(g.name).Create(t.Context(), deployment(g.name, "idle", 0, labels, g.pod(podSpec{cpu: "100m", mem: "64Mi", labels: labels})), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node and the workload in the caches", func() error {
		if _, ok := nodeByName(c, node); !ok {
			return fmt.Errorf("node %s not listed", node)
		}
		_, err := c.Target(t.Context(), capacity.TargetRef{Kind: "Deployment", Name: "idle", Namespace: g.name})
		return err
	})

	// A heartbeat and a status-only write, then time for the informers to deliver them (well
	// under a second on loopback). Anything else in the cluster may move the version meanwhile,
	// so a few attempts; a version that moves for these writes moves in every attempt.
	heartbeat := func(ctx context.Context) error {
		n, err := g.c.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations["headroom.test/heartbeat"] = time.Now().Format(time.RFC3339Nano) // a write whatever the clock
		if n, err = g.c.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
		}
		_, err = g.c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	}
	bookkeeping := func(ctx context.Context) error {
		d, err := g.c.AppsV1().Deployments(g.name).Get(ctx, "idle", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{
			Type: "Bookkeeping", Status: corev1.ConditionTrue, LastUpdateTime: metav1.Now(),
		})
		_, err = g.c.AppsV1().Deployments(g.name).UpdateStatus(ctx, d, metav1.UpdateOptions{})
		return err
	}
	still := false
	for attempt := 0; attempt < 5 && !still; attempt++ {
		v0 := c.Version()
		for _, write := range []func(context.Context) error{heartbeat, bookkeeping} {
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return write(t.Context()) }); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		still = c.Version() == v0
	}
	if !still {
		t.Error("Version moved after every node heartbeat and workload status write")
	}

	// What a fit or a target reads does move it.
	v0 := c.Version()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := g.c.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels["zone"] = "b"
		_, err = g.c.CoreV1().Nodes().Update(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a version after a node label change", func() error {
		if c.Version() == v0 {
			return fmt.Errorf("version still %d", v0)
		}
		return nil
	})
	v1 := c.Version()
	scale, err := g.c.AppsV1().Deployments(g.name).GetScale(t.Context(), "idle", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 1
	if _, err := g.c.AppsV1().Deployments(g.name).UpdateScale(t.Context(), "idle", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a version after a scale", func() error {
		if c.Version() == v1 {
			return fmt.Errorf("version still %d", v1)
		}
		return nil
	})
}
