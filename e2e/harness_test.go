package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(runner{m})
}

// runner runs the tests, then stops the shared stack, so that its goroutines are gone before
// goleak looks.
type runner struct{ m *testing.M }

func (r runner) Run() int {
	code := r.m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if s := shared.stack; s != nil {
		// The scalers stop first, so that a race in their shutdown is in the logs too.
		for _, sc := range s.Scalers {
			sc.Stop()
		}
		races, err := s.Races()
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: read the scalers' logs for races: %v\n", err)
			code = 1
		}
		for _, r := range races {
			fmt.Fprintf(os.Stderr, "e2e: the race detector reported, in %s\n", r)
			code = 1
		}
		s.Stop()
	}
	return code
}

var shared struct {
	mu    sync.Mutex
	once  sync.Once
	stack *Stack
	err   error
}

// stackFor returns the stack every test of the suite shares (KEDA, two scaler replicas, two
// 4-CPU nodes), starting it on first use. The scenarios run one after another, each in its
// own namespace, and wait for their pods to be gone before they end: several of them measure
// the whole cluster's room.
func stackFor(t *testing.T) *Stack {
	t.Helper()
	labtest.Short(t, "end-to-end stack (RabbitMQ, control plane, KEDA, scaler)")
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// The scalers run under the race detector: the suite is where their goroutines
		// (planner, broker refreshes, informers, streams, patches) meet real KEDA traffic.
		opts := StackOptions{KEDA: true, ScalerReplicas: 2, Race: true}
		if testing.Verbose() {
			opts.Progress = os.Stderr
		}
		s, err := StartStack(ctx, opts)
		shared.mu.Lock()
		shared.stack, shared.err = s, err
		shared.mu.Unlock()
	})
	labtest.Check(t, "end-to-end stack", shared.err)
	return shared.stack
}

// namespace creates a namespace for t; when t ends it deletes it and waits until its pods are
// gone, so that the next scenario finds the nodes empty.
func namespace(t *testing.T, s *Stack) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%06x", rand.Uint32()&0xffffff)
	client := s.Kube.Client()
	if _, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		// Delete the ScaledObjects first: KEDA removes its finalizer and the HPA, then the pods.
		_ = dynamicClient(t, s).Resource(scaledObjectsGVR).Namespace(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = client.AppsV1().Deployments(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		zero := int64(0)
		_ = client.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		_ = client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		_ = lab.WaitFor(ctx, "pods of "+name+" gone", 60*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
			pods, err := client.CoreV1().Pods(name).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			if n := len(pods.Items); n > 0 {
				return fmt.Errorf("%d pods left", n)
			}
			return nil
		})
	})
	return name
}

var scaledObjectsGVR = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

func dynamicClient(t *testing.T, s *Stack) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(s.Kube.RESTConfig())
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	return d
}

// workload is a Deployment of emulated workers and its ScaledObject on the stack's scaler.
type workload struct {
	Name, Namespace string
	CPU, Memory     string // requests of one worker
	Queue           string
	Replicas        int // initial
	Max             int
	Push            bool // external-push (StreamIsActive) instead of external
	PollingInterval int  // seconds; 0 means 1
	Cooldown        int  // seconds; 0 means 2
	// Fallback, when > 0, is KEDA's failureThreshold with behavior currentReplicas.
	Fallback int
	Metadata map[string]string // trigger metadata besides scalerAddress and queue
}

func (w workload) manifests(scalerAddress string) string {
	polling, cooldown := w.PollingInterval, w.Cooldown
	if polling == 0 {
		polling = 1
	}
	if cooldown == 0 {
		cooldown = 2
	}
	trigger := "external"
	if w.Push {
		trigger = "external-push"
	}
	var md strings.Builder
	fmt.Fprintf(&md, "      scalerAddress: %q\n      queue: %q\n", scalerAddress, w.Queue)
	for k, v := range w.Metadata {
		fmt.Fprintf(&md, "      %s: %q\n", k, v)
	}
	fallback := ""
	if w.Fallback > 0 {
		fallback = fmt.Sprintf("  fallback: {failureThreshold: %d, replicas: 1, behavior: currentReplicas}\n", w.Fallback)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  replicas: %[3]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: worker
        image: example.invalid/worker:never-pulled
        resources: {requests: {cpu: %[4]q, memory: %[5]q}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  scaleTargetRef: {name: %[1]s}
  pollingInterval: %[6]d
  cooldownPeriod: %[7]d
  minReplicaCount: 0
  maxReplicaCount: %[8]d
%[9]s  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp:
          stabilizationWindowSeconds: 0
          policies: [{type: Pods, value: 100, periodSeconds: 1}]
        scaleDown:
          stabilizationWindowSeconds: 0
          policies: [{type: Pods, value: 100, periodSeconds: 1}]
  triggers:
  - type: %[10]s
    metricType: AverageValue
    metadata:
%[11]s`, w.Name, w.Namespace, w.Replicas, w.CPU, w.Memory, polling, cooldown, w.Max, fallback, trigger, md.String())
}

// deploy applies w's Deployment and ScaledObject and declares its queue.
func deploy(t *testing.T, s *Stack, w workload) {
	t.Helper()
	if err := s.Rabbit.Admin().DeclareQueue(t.Context(), "/", w.Queue); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	t.Cleanup(func() { _ = s.Rabbit.Admin().DeleteQueue(context.Background(), "/", w.Queue) })
	if _, err := lab.ApplyYAML(t.Context(), s.Kube, []byte(w.manifests(s.ScalerAddress))); err != nil {
		t.Fatalf("apply %s: %v", w.Name, err)
	}
}

// workers starts the worker emulator on w's pods.
func workers(t *testing.T, s *Stack, w workload, serviceTime time.Duration) *lab.Workers {
	t.Helper()
	return labtest.Workers(t, lab.WorkerOptions{
		Client: s.Kube.Client(), Namespace: w.Namespace, Selector: "app=" + w.Name,
		AMQPURL: s.Rabbit.AMQPURL(), Queue: w.Queue, ServiceTime: serviceTime,
	})
}

// publish sends n persistent messages to queue, each held by a worker for serviceTime (0:
// the emulator's default), and waits for the broker's confirms.
func publish(t *testing.T, s *Stack, queue string, n int, serviceTime time.Duration) {
	t.Helper()
	conn, err := amqp.Dial(s.Rabbit.AMQPURL())
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm mode: %v", err)
	}
	var headers amqp.Table
	if serviceTime > 0 {
		headers = amqp.Table{lab.WorkerServiceTimeHeader: serviceTime.Milliseconds()}
	}
	for i := 0; i < n; i++ {
		c, err := ch.PublishWithDeferredConfirmWithContext(t.Context(), "", queue, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Headers: headers, Body: []byte("job")})
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		if ok, err := c.WaitContext(t.Context()); !ok || err != nil {
			t.Fatalf("publish: not confirmed (%v)", err)
		}
	}
}

// sample is what the API server said about the workloads of a namespace at one instant.
type sample struct {
	at   time.Duration // since the recording started
	when time.Time
	// spec is each Deployment's spec.replicas.
	spec map[string]int32
	// running and unschedulable count pods by Deployment (app label): Running, and Pending
	// with PodScheduled=False reason Unschedulable.
	running, unschedulable map[string]int
}

func (s sample) String() string {
	return fmt.Sprintf("%5.1fs spec=%v running=%v unschedulable=%v", s.at.Seconds(), s.spec, s.running, s.unschedulable)
}

// observe reads the namespace's Deployments and pods.
func observe(ctx context.Context, s *Stack, ns string, since time.Time) (sample, error) {
	c := s.Kube.Client()
	out := sample{at: time.Since(since), when: time.Now(), spec: map[string]int32{}, running: map[string]int{}, unschedulable: map[string]int{}}
	deps, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out, err
	}
	for _, d := range deps.Items {
		if d.Spec.Replicas != nil {
			out.spec[d.Name] = *d.Spec.Replicas
		}
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return out, err
	}
	for _, p := range pods.Items {
		app := p.Labels["app"]
		if p.DeletionTimestamp != nil {
			continue
		}
		switch p.Status.Phase {
		case corev1.PodRunning:
			out.running[app]++
		case corev1.PodPending:
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable {
					out.unschedulable[app]++
				}
			}
		}
	}
	return out, nil
}

// recorder samples a namespace every 200 ms in the background until stop.
type recorder struct {
	mu      sync.Mutex
	samples []sample
	cancel  context.CancelFunc
	done    chan struct{}
}

func record(t *testing.T, s *Stack, ns string) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &recorder{cancel: cancel, done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(r.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if smp, err := observe(ctx, s, ns, start); err == nil {
				r.mu.Lock()
				r.samples = append(r.samples, smp)
				r.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the sampling and returns every sample taken.
func (r *recorder) stop() []sample {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sample(nil), r.samples...)
}

// last returns the latest sample (zero when none yet).
func (r *recorder) last() sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return sample{}
	}
	return r.samples[len(r.samples)-1]
}

// waitFor polls the recorder's latest sample until ok, failing t after timeout with the
// samples so far.
func (r *recorder) waitFor(t *testing.T, what string, timeout time.Duration, ok func(sample) bool) sample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if smp := r.last(); smp.spec != nil && ok(smp) {
			return smp
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; samples:\n%s", what, timeout, r.dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle waits until no Deployment's spec.replicas changed for quiet (failing t after
// timeout) and returns the latest sample.
func (r *recorder) settle(t *testing.T, quiet, timeout time.Duration) sample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		n := len(r.samples)
		var last sample
		changed := time.Time{}
		if n > 0 {
			last = r.samples[n-1]
			changed = r.samples[0].when
			for i := 1; i < n; i++ {
				if fmt.Sprint(r.samples[i].spec) != fmt.Sprint(r.samples[i-1].spec) {
					changed = r.samples[i].when
				}
			}
		}
		r.mu.Unlock()
		if n > 0 && time.Since(changed) >= quiet {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not settle for %v within %v; samples:\n%s", quiet, timeout, r.dump())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// since returns the samples taken after t0.
func (r *recorder) since(t0 time.Time) []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sample
	for _, smp := range r.samples {
		if smp.when.After(t0) {
			out = append(out, smp)
		}
	}
	return out
}

// dump formats the distinct samples (consecutive duplicates dropped) for failure messages.
func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	prev := ""
	for _, smp := range r.samples {
		cur := fmt.Sprintf("spec=%v running=%v unschedulable=%v", smp.spec, smp.running, smp.unschedulable)
		if cur != prev {
			fmt.Fprintln(&b, smp)
			prev = cur
		}
	}
	return b.String()
}

// specSequence returns the distinct consecutive values of one Deployment's spec.replicas.
func specSequence(samples []sample, name string) []int32 {
	var seq []int32
	for _, smp := range samples {
		v, ok := smp.spec[name]
		if !ok {
			continue
		}
		if len(seq) == 0 || seq[len(seq)-1] != v {
			seq = append(seq, v)
		}
	}
	return seq
}
