package server_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// workerDeployment is a Deployment of KWOK worker pods pinned to the nodes labelled group.
func workerDeployment(ns, name, group string, replicas int32, requests, limits corev1.ResourceList) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"headroom.test/group": group},
					Tolerations:  []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
					Containers: []corev1.Container{{Name: "w", Image: "worker", Resources: corev1.ResourceRequirements{
						Requests: requests, Limits: limits}}},
				},
			},
		},
	}
}

// startCluster starts the capacity caches over a real control plane, as `scaler serve` does.
func startCluster(t *testing.T, k *lab.Kube) *capacity.Cluster {
	t.Helper()
	dc, err := dynamic.NewForConfig(k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := capacity.New(capacity.Options{Client: k.Client(), Dynamic: dc, ScalerAddresses: []string{"headroom.keda:9090"}, CRDInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return cluster
}

// TestFitCountsOwnPodsAtFootprint: with a footprint larger than the requests (limits, or an
// explicit size), the target's own running pods count at the footprint, so the memory the
// idle workers will use once busy is not handed to new pods. On a real control plane: three
// loaders request 256Mi on a 16Gi node; at a 4Gi footprint they take 12Gi, and one more fits
// (counting them at their requests would have said three).
func TestFitCountsOwnPodsAtFootprint(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := labtest.SharedKube(t, lab.KubeOptions{})
	ctx := t.Context()
	const ns = "fitfp"
	kc := k.Client()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	if err := k.AddNode(ctx, lab.NodeSpec{Name: "fitfp-a", CPU: "8", Memory: "16Gi", Labels: map[string]string{"headroom.test/group": ns}}); err != nil {
		t.Fatalf("add node: %v", err)
	}
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
	lim := corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("4Gi")}
	if _, err := kc.AppsV1().Deployments(ns).Create(ctx, workerDeployment(ns, "loader", ns, 3, req, lim), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	c := &server.Capacity{Cluster: startCluster(t, k)}
	ref := server.TargetRef{Namespace: ns, Kind: "Deployment", Name: "loader"}
	for _, tc := range []struct {
		name    string
		fp      server.Footprint
		wantFit int32
	}{
		// 16Gi − 3 × 256Mi = 15.25Gi: 61 pods of 256Mi.
		{name: "requests", fp: server.Footprint{Mode: server.FootprintRequests}, wantFit: 61},
		// 16Gi − 3 × 4Gi = 4Gi: one pod of 4Gi (not ⌊15.25Gi / 4Gi⌋ = 3).
		{name: "limits", fp: server.Footprint{Mode: server.FootprintLimits}, wantFit: 1},
		{name: "explicit", fp: server.Footprint{Mode: server.FootprintExplicit, Explicit: server.Resources{Memory: 4 << 30}}, wantFit: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got server.Workload
			err := lab.WaitFor(ctx, "three loaders bound and counted", 60*time.Second, 100*time.Millisecond, func(context.Context) error {
				var err error
				got, err = c.Workload(ref, tc.fp, server.Resources{})
				if err != nil {
					return err
				}
				bound := 0
				for _, p := range got.Pods {
					if p.Node != "" {
						bound++
					}
				}
				if bound != 3 || got.Fit != tc.wantFit {
					return fmt.Errorf("%d pods bound, fit = %d, want 3 and %d", bound, got.Fit, tc.wantFit)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// busyLab is a scaler (the real server, queue reader and capacity caches) over a real control
// plane and a real RabbitMQ, one queue, and emulated workers consuming from the pods' IPs.
type busyLab struct {
	k       *lab.Kube
	kc      kubernetes.Interface
	q       string
	reader  *queue.Reader
	srv     *server.Server
	reg     *prometheus.Registry
	ch      *amqp.Channel
	workers *lab.Workers
}

// newBusyLab sets up namespace ns with one node per name (pods pinned to them by label), the
// queue, the scaler with pods(client) as its deletion-cost patcher, and the workers of the pods
// labelled app=loader, each holding a message for service unless it says otherwise.
func newBusyLab(t *testing.T, ns string, nodes []string, pods func(kubernetes.Interface) server.PodPatcher, service time.Duration) *busyLab {
	t.Helper()
	labtest.Short(t, "Kubernetes control plane and RabbitMQ")
	rmq := labtest.SharedRabbitMQ(t)
	l := &busyLab{k: labtest.SharedKube(t, lab.KubeOptions{}), reg: prometheus.NewRegistry()}
	ctx := t.Context()
	l.kc = l.k.Client()
	if _, err := l.kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	for _, n := range nodes {
		if err := l.k.AddNode(ctx, lab.NodeSpec{Name: n, CPU: "8", Memory: "16Gi", Labels: map[string]string{"headroom.test/group": ns}}); err != nil {
			t.Fatalf("add node: %v", err)
		}
	}
	installCRD(t, l.k)
	l.q = ns + "-" + fmt.Sprint(time.Now().UnixNano())
	if err := rmq.Admin().DeclareQueue(ctx, "/", l.q); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rmq.Admin().DeleteQueue(context.Background(), "/", l.q) })
	var err error
	l.reader, err = queue.NewReader([]queue.BrokerConfig{{Name: "main", URL: rmq.ManagementURL(), Username: "guest", Password: "guest"}}, queue.Options{Refresh: testRefresh})
	if err != nil {
		t.Fatal(err)
	}
	l.reader.Start(context.Background())
	t.Cleanup(func() { _ = l.reader.Close() })
	l.srv, err = server.New(server.Options{Queue: l.reader, Brokers: l.reader,
		Cluster:    &server.Capacity{Cluster: startCluster(t, l.k), Addresses: []string{"headroom.keda:9090"}},
		Registerer: l.reg, Refresh: testRefresh, Pods: pods(l.kc)})
	if err != nil {
		t.Fatal(err)
	}
	l.srv.Start(context.Background())
	t.Cleanup(l.srv.Close)
	l.workers = labtest.Workers(t, lab.WorkerOptions{Client: l.kc, Namespace: ns, Selector: "app=loader",
		AMQPURL: rmq.AMQPURL(), Queue: l.q, ServiceTime: service})
	conn, err := amqp.Dial(rmq.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if l.ch, err = conn.Channel(); err != nil {
		t.Fatal(err)
	}
	return l
}

// metadata is the trigger metadata of the ScaledObjects of a busyLab.
func (l *busyLab) metadata() map[string]string {
	return map[string]string{"scalerAddress": "headroom.keda:9090", "broker": "main", "queue": l.q}
}

// wait fails the test unless ok returns nil within 90 s.
func (l *busyLab) wait(t *testing.T, what string, ok func() error) {
	t.Helper()
	if err := lab.WaitFor(t.Context(), what, 90*time.Second, 100*time.Millisecond, func(context.Context) error { return ok() }); err != nil {
		t.Fatal(err)
	}
}

// waitWorkers waits until the workers' counters satisfy ok.
func (l *busyLab) waitWorkers(t *testing.T, what string, ok func(lab.WorkerStats) bool) {
	t.Helper()
	l.wait(t, what, func() error {
		if s := l.workers.Stats(); !ok(s) {
			return fmt.Errorf("workers: %+v", s)
		}
		return nil
	})
}

// startRound waits for n idle workers, all registered at the broker (or the first ones
// would take every message), then moves the broker's round-robin on by skip short messages,
// so that each round finds a different busy set.
func (l *busyLab) startRound(t *testing.T, n, skip int) {
	t.Helper()
	l.waitWorkers(t, fmt.Sprintf("%d idle workers connected", n), func(s lab.WorkerStats) bool { return s.Connected == n && s.Busy == 0 })
	l.wait(t, fmt.Sprintf("%d consumers at the broker", n), func() error {
		cs, err := l.reader.Consumers(t.Context(), queue.Selector{Broker: "main", Queue: l.q})
		if err != nil {
			return err
		}
		if len(cs) != n {
			return fmt.Errorf("%d consumers", len(cs))
		}
		return nil
	})
	acked := l.workers.Stats().Acked
	publish(t, l.ch, l.q, skip, 50*time.Millisecond)
	l.waitWorkers(t, "short messages acknowledged", func(s lab.WorkerStats) bool { return s.Acked == acked+int64(skip) && s.Busy == 0 })
}

// TestBusyPodsSurviveScaleDown is the busy-aware scale-down on real components: a real
// control plane (its ReplicaSet controller picks the victims), a real RabbitMQ, and six worker
// pods whose consumers connect from the pods' own IPs (lab.Workers). Three pods hold long
// messages; the scaler (the real server and capacity caches, with the deletion-cost patcher)
// marks them; then the Deployment is scaled from 6 to 3 through its scale subresource, as the
// HPA does. The three busy pods must be the survivors, in every round, with a different busy
// set each round. (Without the patcher, the same test lost 5 busy workers in 3 rounds.)
func TestBusyPodsSurviveScaleDown(t *testing.T) {
	const ns = "busy"
	// Each message takes 12 s: long enough to scale down while it is held, short enough for
	// the next round to find every worker idle again.
	const service = 12 * time.Second
	l := newBusyLab(t, ns, []string{"busy-a", "busy-b"}, func(kc kubernetes.Interface) server.PodPatcher { return server.KubePods{Client: kc} }, service)
	ctx, kc := t.Context(), l.kc
	var err error
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	if _, err := kc.AppsV1().Deployments(ns).Create(ctx, workerDeployment(ns, "loader", ns, 6, req, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	createScaledObject(t, l.k, ns, "Deployment", "loader", l.metadata())

	var sets [][]string
	for round := 1; round <= 3; round++ {
		l.startRound(t, 6, round-1)
		acked := l.workers.Stats().Acked
		publish(t, l.ch, l.q, 3, service)
		l.waitWorkers(t, fmt.Sprintf("round %d: three busy", round), func(s lab.WorkerStats) bool { return s.Busy == 3 })
		busy := l.workers.BusyPods()
		sort.Strings(busy)
		sets = append(sets, busy)

		// The scaler marks the busy pods before the scale-down.
		l.wait(t, fmt.Sprintf("round %d: deletion costs on %v", round, busy), func() error {
			return checkCosts(ctx, kc, ns, "app=loader", busy)
		})
		scaleTo(t, kc, ns, "loader", 3)
		var survivors []string
		l.wait(t, fmt.Sprintf("round %d: three pods left", round), func() error {
			survivors, err = livePods(ctx, kc, ns, "app=loader")
			if err != nil {
				return err
			}
			if len(survivors) != 3 {
				return fmt.Errorf("%d pods: %v", len(survivors), survivors)
			}
			return nil
		})
		if !slices.Equal(survivors, busy) {
			t.Errorf("round %d: survivors %v, want the busy pods %v", round, survivors, busy)
		}
		if s := l.workers.Stats(); s.KilledBusy != 0 {
			t.Errorf("round %d: %d busy workers killed, want 0", round, s.KilledBusy)
		}
		l.waitWorkers(t, fmt.Sprintf("round %d: three acknowledged", round), func(s lab.WorkerStats) bool { return s.Acked == acked+3 && s.Busy == 0 })
		scaleTo(t, kc, ns, "loader", 6)
	}
	t.Logf("busy sets: %v", sets)
	if got := counterValue(t, l.reg, "headroom_deletion_cost_patches_total"); got == 0 {
		t.Error("headroom_deletion_cost_patches_total = 0, want > 0")
	}
}

// TestStatefulSetHeldAtBusyOrdinal: a StatefulSet always removes its highest ordinals, so
// deletion costs cannot help; the scaler holds the scale-down at the highest busy ordinal + 1.
// On real components (the StatefulSet controller, RabbitMQ, consumers from the pods' IPs):
// one pod of four holds a long message; the answer must be its ordinal + 1, and scaling the
// StatefulSet to the answer must leave the busy pod running. Three rounds, with the broker's
// round-robin moved on between them so that the busy ordinal changes.
func TestStatefulSetHeldAtBusyOrdinal(t *testing.T) {
	const ns = "busysts"
	rec := &recordedPatches{pods: map[string]string{}}
	l := newBusyLab(t, ns, []string{"busysts-a"}, func(kubernetes.Interface) server.PodPatcher { return rec }, 12*time.Second)
	ctx, kc := t.Context(), l.kc
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}
	dep := workerDeployment(ns, "loader", ns, 4, req, nil)
	sts := &appsv1.StatefulSet{
		ObjectMeta: dep.ObjectMeta,
		Spec: appsv1.StatefulSetSpec{
			Replicas: dep.Spec.Replicas, Selector: dep.Spec.Selector, Template: dep.Spec.Template,
			ServiceName: "loader", PodManagementPolicy: appsv1.ParallelPodManagement,
		},
	}
	if _, err := kc.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create statefulset: %v", err)
	}
	md := l.metadata()
	createScaledObject(t, l.k, ns, "StatefulSet", "loader", md)
	r := &pb.ScaledObjectRef{Namespace: ns, Name: "loader", ScalerMetadata: md}
	for round := 1; round <= 3; round++ {
		l.startRound(t, 4, round-1)
		publish(t, l.ch, l.q, 1, 12*time.Second)
		l.waitWorkers(t, fmt.Sprintf("round %d: one busy", round), func(s lab.WorkerStats) bool { return s.Busy == 1 })
		busy := l.workers.BusyPods()[0]
		var ordinal int
		if _, err := fmt.Sscanf(busy, "loader-%d", &ordinal); err != nil {
			t.Fatalf("busy pod %q: %v", busy, err)
		}
		// One message needs one worker; the busy ordinal holds the answer at ordinal + 1.
		want := float64(ordinal + 1)
		l.wait(t, fmt.Sprintf("round %d: answer %v (busy %s)", round, want, busy), func() error {
			resp, err := l.srv.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: r})
			if err != nil {
				return err
			}
			if got := resp.MetricValues[0].MetricValueFloat; got != want {
				return fmt.Errorf("GetMetrics = %v", got)
			}
			return nil
		})
		t.Logf("round %d: %s busy, answer %v", round, busy, want)
		scaleStatefulSetTo(t, kc, ns, "loader", int32(want))
		l.wait(t, fmt.Sprintf("round %d: %v pods left", round, want), func() error {
			live, err := livePods(ctx, kc, ns, "app=loader")
			if err != nil {
				return err
			}
			if len(live) != int(want) || !slices.Contains(live, busy) {
				return fmt.Errorf("pods %v", live)
			}
			return nil
		})
		if s := l.workers.Stats(); s.KilledBusy != 0 {
			t.Errorf("round %d: %d busy workers killed, want 0", round, s.KilledBusy)
		}
		l.waitWorkers(t, fmt.Sprintf("round %d: message acknowledged", round), func(s lab.WorkerStats) bool { return s.Busy == 0 })
		scaleStatefulSetTo(t, kc, ns, "loader", 4)
	}
	if n := rec.count(); n != 0 {
		t.Errorf("%d deletion-cost patches on a StatefulSet, want 0", n)
	}
}

// publish sends n messages that the emulated workers hold for d each.
func publish(t *testing.T, ch *amqp.Channel, q string, n int, d time.Duration) {
	t.Helper()
	for range n {
		err := ch.PublishWithContext(t.Context(), "", q, false, false, amqp.Publishing{
			Headers: amqp.Table{lab.WorkerServiceTimeHeader: int64(d / time.Millisecond)},
			Body:    []byte("job"),
		})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// checkCosts reports an error until exactly the busy pods carry a positive deletion cost.
func checkCosts(ctx context.Context, kc kubernetes.Interface, ns, selector string, busy []string) error {
	pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		cost, has := p.Annotations[server.DeletionCostAnnotation]
		want := slices.Contains(busy, p.Name)
		switch {
		case want && (!has || cost == "0"):
			return fmt.Errorf("busy pod %s has cost %q", p.Name, cost)
		case !want && has && cost != "0":
			return fmt.Errorf("idle pod %s has cost %q", p.Name, cost)
		}
	}
	return nil
}

// livePods lists the names of the pods that are not being deleted, sorted.
func livePods(ctx context.Context, kc kubernetes.Interface, ns, selector string) ([]string, error) {
	pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// scaleTo sets a Deployment's replicas through its scale subresource, as the HPA does.
func scaleTo(t *testing.T, kc kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	ctx := t.Context()
	sc, err := kc.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get scale: %v", err)
	}
	sc.Spec.Replicas = n
	if _, err := kc.AppsV1().Deployments(ns).UpdateScale(ctx, name, sc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update scale to %d: %v", n, err)
	}
}

// scaleStatefulSetTo sets a StatefulSet's replicas through its scale subresource.
func scaleStatefulSetTo(t *testing.T, kc kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	ctx := t.Context()
	sc, err := kc.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get scale: %v", err)
	}
	sc.Spec.Replicas = n
	if _, err := kc.AppsV1().StatefulSets(ns).UpdateScale(ctx, name, sc, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update scale to %d: %v", n, err)
	}
}

// createScaledObject creates a ScaledObject with one external trigger, retrying until its
// CRD is served.
func createScaledObject(t *testing.T, k *lab.Kube, ns, kind, target string, metadata map[string]string) {
	t.Helper()
	md := map[string]any{}
	for k, v := range metadata {
		md[k] = v
	}
	dc, err := dynamic.NewForConfig(k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": target, "namespace": ns},
		"spec": map[string]any{
			"scaleTargetRef": map[string]any{"name": target, "kind": kind},
			"triggers":       []any{map[string]any{"type": "external", "metadata": md}},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	if err := lab.WaitFor(t.Context(), "ScaledObject accepted", 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		_, err := dc.Resource(gvr).Namespace(ns).Create(ctx, so, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// counterValue sums a counter family's samples.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
