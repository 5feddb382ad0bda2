package server_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// TestRealClusterAndBroker runs the whole server on real components: a RabbitMQ broker, and
// a control plane (API server, controller manager, scheduler, KWOK nodes) with KEDA's
// ScaledObject CRD. The answer must follow the queue depth, be bounded by what the scheduler
// could place, and a change of limiting factor must leave an Event on the ScaledObject.
func TestRealClusterAndBroker(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	rmq := labtest.SharedRabbitMQ(t)
	k := labtest.SharedKube(t, lab.KubeOptions{})
	ctx := t.Context()
	const ns = "srv"
	kc := k.Client()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	// Two nodes of 4 CPUs: 8 workers of 1 CPU fit.
	for _, n := range []string{"srv-a", "srv-b"} {
		if err := k.AddNode(ctx, lab.NodeSpec{Name: n, CPU: "4", Memory: "16Gi", Labels: map[string]string{"headroom.test/group": ns}}); err != nil {
			t.Fatalf("add node: %v", err)
		}
	}
	installCRD(t, k)
	dc, err := dynamic.NewForConfig(k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}

	q := "real-" + fmt.Sprint(time.Now().UnixNano())
	if err := rmq.Admin().DeclareQueue(ctx, "/", q); err != nil {
		t.Fatal(err)
	}
	defer rmq.Admin().DeleteQueue(context.Background(), "/", q)
	if err := rmq.Admin().Publish(ctx, "/", q, 20); err != nil {
		t.Fatal(err)
	}

	dep := workerDeployment(ns, "worker", ns, 3,
		corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}, nil)
	if _, err := kc.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	md := map[string]any{"scalerAddress": "headroom.keda:9090", "broker": "main", "queue": q, "stepPods": "100"}
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": "worker", "namespace": ns},
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": "worker"},
			"maxReplicaCount": int64(30),
			"triggers":        []any{map[string]any{"type": "external", "metadata": md}},
		},
	}}
	soGVR := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	if err := lab.WaitFor(ctx, "ScaledObject accepted", 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		_, err := dc.Resource(soGVR).Namespace(ns).Create(ctx, so, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// The scaler, as `scaler serve` wires it.
	reader, err := queue.NewReader([]queue.BrokerConfig{{Name: "main", URL: rmq.ManagementURL(), Username: "guest", Password: "guest"}}, queue.Options{Refresh: testRefresh})
	if err != nil {
		t.Fatal(err)
	}
	reader.Start(context.Background())
	defer reader.Close()
	cluster, err := capacity.New(capacity.Options{Client: kc, Dynamic: dc, ScalerAddresses: []string{"headroom.keda:9090"}, CRDInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	evCtx, evCancel := context.WithCancel(context.Background())
	events := &server.KubeEvents{Client: kc, Interval: time.Millisecond}
	evDone := make(chan struct{})
	go func() { defer close(evDone); events.Run(evCtx) }()
	defer func() { evCancel(); <-evDone }()
	srv, err := server.New(server.Options{Queue: reader, Brokers: reader, Cluster: &server.Capacity{Cluster: cluster, Addresses: []string{"headroom.keda:9090"}},
		Registerer: prometheus.NewRegistry(), Events: events, Refresh: testRefresh})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(context.Background())
	defer srv.Close()
	g := grpc.NewServer()
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	r := &pb.ScaledObjectRef{Namespace: ns, Name: "worker", ScalerMetadata: map[string]string{"scalerAddress": "headroom.keda:9090", "broker": "main", "queue": q, "stepPods": "100"}}

	value := func() (float64, error) {
		resp, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: r})
		if err != nil {
			return 0, err
		}
		return resp.MetricValues[0].MetricValueFloat, nil
	}
	expect := func(what string, want float64) {
		t.Helper()
		var got float64
		var err error
		if werr := lab.WaitFor(ctx, what, 60*time.Second, 100*time.Millisecond, func(context.Context) error {
			got, err = value()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("GetMetrics = %v, want %v", got, want)
			}
			return nil
		}); werr != nil {
			t.Fatal(werr)
		}
	}
	// 3 workers of 1 CPU run on 8 CPUs: 5 more fit. The queue needs 20: the answer is 8.
	expect("bounded by fit", 8)
	// Fewer messages than room: the answer follows the queue.
	if err := rmq.Admin().PurgeQueue(ctx, "/", q); err != nil {
		t.Fatal(err)
	}
	if err := rmq.Admin().Publish(ctx, "/", q, 5); err != nil {
		t.Fatal(err)
	}
	expect("follows the queue", 5)
	// More room (a third node): the bound moves.
	if err := rmq.Admin().Publish(ctx, "/", q, 20); err != nil {
		t.Fatal(err)
	}
	if err := k.AddNode(ctx, lab.NodeSpec{Name: "srv-c", CPU: "4", Memory: "16Gi", Labels: map[string]string{"headroom.test/group": ns}}); err != nil {
		t.Fatalf("add node: %v", err)
	}
	expect("bounded by the larger fit", 12)
	// A changed ScaledObject is read again, although the unchanged list is kept between
	// passes: its new maxReplicaCount bounds the answer.
	cur, err := dc.Resource(soGVR).Namespace(ns).Get(ctx, "worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(cur.Object, int64(10), "spec", "maxReplicaCount"); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Resource(soGVR).Namespace(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("bounded by the new maxReplicaCount", 10)

	// The limit went capacity → queue → capacity: an Event on the ScaledObject says so.
	if err := lab.WaitFor(ctx, "LimitChanged event", 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
		evs, err := kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=ScaledObject,involvedObject.name=worker"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "LimitChanged" {
				return nil
			}
		}
		return fmt.Errorf("%d events, none LimitChanged", len(evs.Items))
	}); err != nil {
		t.Error(err)
	}

	// The decisions page says why the HPA will not run the answer as it is, from the
	// ScaledObject in the cluster: a polled trigger and no HPA behavior. Once both are set
	// as the examples set them (through the real CRD's schema), nothing is left to say.
	hpa := func() string {
		for _, a := range srv.Decisions().Decisions {
			if a.Namespace == ns && a.ScaledObject == "worker" {
				return strings.Join(a.HPA, "\n")
			}
		}
		return "(no decision for the ScaledObject)"
	}
	if got := hpa(); !strings.Contains(got, "warning: spec.triggers[0].type: external:") ||
		!strings.Contains(got, "warning: spec.advanced.horizontalPodAutoscalerConfig.behavior: not set") || strings.Count(got, "\n") != 1 {
		t.Errorf("HPA findings:\n%s\nwant the polled trigger and the missing behavior", got)
	}
	cur, err = dc.Resource(soGVR).Namespace(ns).Get(ctx, "worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]any{"stabilizationWindowSeconds": int64(0), "tolerance": "0",
		"policies": []any{map[string]any{"type": "Pods", "value": int64(10), "periodSeconds": int64(15)}}}
	if err := unstructured.SetNestedField(cur.Object, map[string]any{"scaleUp": rules, "scaleDown": rules}, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(cur.Object, []any{map[string]any{"type": "external-push", "metadata": md}}, "spec", "triggers"); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Resource(soGVR).Namespace(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(ctx, "no HPA findings", 30*time.Second, 100*time.Millisecond, func(context.Context) error {
		srv.PlanNow()
		if got := hpa(); got != "" {
			return fmt.Errorf("HPA findings:\n%s", got)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func installCRD(t *testing.T, k *lab.Kube) {
	t.Helper()
	path, err := lab.ScaledObjectCRD.Fetch(t.Context())
	labtest.Check(t, "KEDA ScaledObject CRD", err)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	dc, err := dynamic.NewForConfig(k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dc.Resource(gvr).Create(t.Context(), &unstructured.Unstructured{Object: crd}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create ScaledObject CRD: %v", err)
	}
}
