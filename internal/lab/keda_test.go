package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
)

// fixedScaler is an external scaler whose answer the test sets. It is a stand-in on purpose:
// this test checks that the harness runs KEDA correctly (operator, adapter, APIService, HPA),
// while the real scaler is driven through KEDA by the end-to-end suite.
type fixedScaler struct {
	pb.UnimplementedExternalScalerServer
	value atomic.Int64
}

func (s *fixedScaler) IsActive(context.Context, *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	return &pb.IsActiveResponse{Result: s.value.Load() > 0}, nil
}

func (s *fixedScaler) GetMetricSpec(context.Context, *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{{MetricName: "fixed", TargetSize: 1, TargetSizeFloat: 1}}}, nil
}

func (s *fixedScaler) GetMetrics(_ context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	v := s.value.Load()
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{MetricName: req.MetricName, MetricValue: v, MetricValueFloat: float64(v)}}}, nil
}

// TestStartKEDA runs the real KEDA operator and metrics adapter against a loopback control
// plane and checks the whole KEDA path: the ScaledObject's HPA is created, the external
// metric is served through the aggregation layer, and the Deployment follows the scaler's
// answer up and back to zero.
func TestStartKEDA(t *testing.T) {
	kube := labtest.Kube(t, lab.KubeOptions{})
	keda := labtest.KEDA(t, kube, lab.KEDAOptions{})
	ctx := t.Context()

	scaler := &fixedScaler{}
	scaler.value.Store(3)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterExternalScalerServer(srv, scaler)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	if err := kube.AddNode(ctx, lab.NodeSpec{Name: "keda-node", CPU: "8", Memory: "16Gi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.ApplyYAML(ctx, kube, []byte(echoManifests(lis.Addr().String()))); err != nil {
		t.Fatal(err)
	}

	deploys := kube.Client().AppsV1().Deployments("default")
	waitReplicas := func(want int32) {
		t.Helper()
		err := lab.WaitFor(ctx, fmt.Sprintf("echo at %d ready replicas", want), 90*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
			d, err := deploys.Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas != want || d.Status.ReadyReplicas != want {
				return fmt.Errorf("spec %v, ready %d", d.Spec.Replicas, d.Status.ReadyReplicas)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\noperator log:\n%s", err, keda.Operator.Tail(3000))
		}
	}
	waitReplicas(3)

	if _, err := kube.Client().AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "keda-hpa-echo", metav1.GetOptions{}); err != nil {
		t.Errorf("KEDA's HPA for the ScaledObject: %v", err)
	}
	raw, err := kube.Client().Discovery().RESTClient().Get().
		AbsPath("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/s0-fixed").
		Param("labelSelector", "scaledobject.keda.sh/name=echo").DoRaw(ctx)
	if err != nil {
		t.Fatalf("external metric through the aggregation layer: %v", err)
	}
	var list struct {
		Items []struct {
			Value string `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if len(list.Items) != 1 || list.Items[0].Value != "3" {
		t.Errorf("external metric s0-fixed = %s, want one item with value 3", raw)
	}

	scaler.value.Store(0)
	waitReplicas(0)
}

// echoManifests is a Deployment and a ScaledObject on the external scaler at addr, tuned for
// fast tests: 1 s polling, no scale-down stabilization, a 1 s cooldown.
func echoManifests(addr string) string {
	return `
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: 0
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: example.invalid/echo:never-pulled
        resources: {requests: {cpu: 100m, memory: 64Mi}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: echo, namespace: default}
spec:
  scaleTargetRef: {name: echo}
  pollingInterval: 1
  cooldownPeriod: 1
  minReplicaCount: 0
  maxReplicaCount: 10
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown: {stabilizationWindowSeconds: 0}
  triggers:
  - type: external
    metadata: {scalerAddress: "` + addr + `"}
`
}
