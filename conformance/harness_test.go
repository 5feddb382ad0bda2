package conformance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
)

var scaledObjects = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

// namespace creates a namespace of its own for t and deletes it when t ends.
func namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("conf-%08x", rand.Uint32())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// target is a scale target for a ScaledObject: a Deployment at 0 replicas (no pods, so every
// test sees the whole cluster free) whose pods would request cpu and memory.
func target(t testing.TB, ns, name, cpu, memory string) {
	t.Helper()
	if _, err := kube.AppsV1().Deployments(ns).Create(t.Context(), idleDeployment(ns, name, cpu, memory), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
}

// idleDeployment is a Deployment at 0 replicas whose pods would request cpu and memory.
func idleDeployment(ns, name, cpu, memory string) *appsv1.Deployment {
	zero := int32(0)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "worker", Image: "example.invalid/worker:never-pulled",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse(cpu),
						corev1.ResourceMemory: resource.MustParse(memory),
					}},
				}}},
			},
		},
	}
}

// scaledObject creates a ScaledObject on the target of the same name with one external
// trigger on the stack's scaler, and deletes it when t ends. metadata is the trigger's
// metadata without scalerAddress.
func scaledObject(t testing.TB, ns, name string, maxReplicas int64, metadata map[string]string) map[string]string {
	t.Helper()
	md := map[string]any{"scalerAddress": stack.ScalerAddress}
	full := map[string]string{"scalerAddress": stack.ScalerAddress}
	for k, v := range metadata {
		md[k] = v
		full[k] = v
	}
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1",
		"kind":       "ScaledObject",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{
			"scaleTargetRef":  map[string]any{"name": name},
			"minReplicaCount": int64(0),
			"maxReplicaCount": maxReplicas,
			"triggers":        []any{map[string]any{"type": "external", "metadata": md}},
		},
	}}
	if _, err := dyn.Resource(scaledObjects).Namespace(ns).Create(t.Context(), so, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create scaledobject %s/%s: %v", ns, name, err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(scaledObjects).Namespace(ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return full
}

// kedaScaler is KEDA's external scaler client for a ScaledObject's trigger, built the way
// KEDA's scale handler builds it, closed when t ends.
func kedaScaler(t testing.TB, ns, name string, metadata map[string]string) scalers.Scaler {
	t.Helper()
	s, err := scalers.NewExternalScaler(scalerConfig(ns, name, metadata))
	if err != nil {
		t.Fatalf("KEDA NewExternalScaler: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// kedaPushScaler is KEDA's external-push scaler client (StreamIsActive).
func kedaPushScaler(t testing.TB, ns, name string, metadata map[string]string) scalers.PushScaler {
	t.Helper()
	s, err := scalers.NewExternalPushScaler(scalerConfig(ns, name, metadata))
	if err != nil {
		t.Fatalf("KEDA NewExternalPushScaler: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func scalerConfig(ns, name string, metadata map[string]string) *scalersconfig.ScalerConfig {
	return &scalersconfig.ScalerConfig{
		ScalableObjectName:      name,
		ScalableObjectNamespace: ns,
		ScalableObjectType:      "ScaledObject",
		TriggerType:             "external",
		TriggerMetadata:         metadata,
		TriggerIndex:            0,
		GlobalHTTPTimeout:       3 * time.Second,
	}
}

// broker is an AMQP connection to the stack's RabbitMQ, closed when t ends.
func broker(t testing.TB) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(stack.AMQPURL)
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	return ch
}

// declare declares a durable queue, deleted when t ends.
func declare(t testing.TB, ch *amqp.Channel, name string) {
	t.Helper()
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatalf("declare %q: %v", name, err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(name, false, false, false) })
}

// publish sends n persistent messages to queue and waits for the broker's confirms.
func publish(t testing.TB, ch *amqp.Channel, queue string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		c, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", queue, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("job")})
		if err != nil {
			t.Fatalf("publish to %q: %v", queue, err)
		}
		if ok, err := c.WaitContext(t.Context()); !ok || err != nil {
			t.Fatalf("publish to %q: not confirmed (%v)", queue, err)
		}
	}
}

// eventually retries f every 100 ms until it returns nil or timeout passes, then fails t with
// f's last error.
func eventually(t testing.TB, what string, timeout time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last error
	for {
		if last = f(ctx); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v\n%s", what, timeout, last, scalerLogs())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
