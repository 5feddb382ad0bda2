package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

func TestWorkerOptionsValidate(t *testing.T) {
	valid := lab.WorkerOptions{
		Client: fake.NewClientset(), Namespace: "default", Selector: "app=w",
		AMQPURL: "amqp://guest:guest@127.0.0.1:5672/", Queue: "jobs",
	}
	tests := []struct {
		name    string
		change  func(*lab.WorkerOptions)
		wantErr string
	}{
		{name: "valid", change: func(*lab.WorkerOptions) {}},
		{name: "localhost", change: func(o *lab.WorkerOptions) { o.AMQPURL = "amqp://localhost:5672/" }},
		{name: "no client", change: func(o *lab.WorkerOptions) { o.Client = nil }, wantErr: "nil Kubernetes client"},
		{name: "no namespace", change: func(o *lab.WorkerOptions) { o.Namespace = "" }, wantErr: "empty namespace"},
		{name: "empty selector", change: func(o *lab.WorkerOptions) { o.Selector = "" }, wantErr: `selector ""`},
		{name: "bad selector", change: func(o *lab.WorkerOptions) { o.Selector = "app in (" }, wantErr: `selector "app in ("`},
		{name: "no queue", change: func(o *lab.WorkerOptions) { o.Queue = "" }, wantErr: "empty queue"},
		{name: "negative prefetch", change: func(o *lab.WorkerOptions) { o.Prefetch = -1 }, wantErr: "prefetch -1"},
		{name: "negative service time", change: func(o *lab.WorkerOptions) { o.ServiceTime = -time.Second }, wantErr: "service time -1s"},
		{name: "negative retry", change: func(o *lab.WorkerOptions) { o.RetryInterval = -time.Second }, wantErr: "retry interval -1s"},
		{name: "not amqp", change: func(o *lab.WorkerOptions) { o.AMQPURL = "http://127.0.0.1/" }, wantErr: "AMQP URL"},
		{name: "remote broker", change: func(o *lab.WorkerOptions) { o.AMQPURL = "amqp://10.1.2.3:5672/" }, wantErr: `host "10.1.2.3" is not a loopback`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.change(&o)
			err := o.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestWorkers runs the emulator against a real broker and real KWOK pods: each Running pod
// gets one connection whose peer address (as the broker sees it) is the pod's IP, messages are
// processed and acknowledged, and deleting a busy pod requeues its message.
func TestWorkers(t *testing.T) {
	rabbit := labtest.RabbitMQ(t)
	kube := labtest.Kube(t, lab.KubeOptions{})
	ctx := t.Context()
	admin := rabbit.Admin()
	if err := admin.DeclareQueue(ctx, "/", "work"); err != nil {
		t.Fatal(err)
	}
	if err := kube.AddNode(ctx, lab.NodeSpec{Name: "worker-node", CPU: "4", Memory: "8Gi"}); err != nil {
		t.Fatal(err)
	}
	pods := kube.Client().CoreV1().Pods("default")
	for _, name := range []string{"w-0", "w-1"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "w"}},
			Spec: corev1.PodSpec{
				NodeName:   "worker-node",
				Containers: []corev1.Container{{Name: "w", Image: "example.invalid/w:never-pulled"}},
			},
		}
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	workers := labtest.Workers(t, lab.WorkerOptions{
		Client: kube.Client(), Namespace: "default", Selector: "app=w",
		AMQPURL: rabbit.AMQPURL(), Queue: "work", ServiceTime: 100 * time.Millisecond,
	})
	waitStats(t, workers, "two connected workers", func(s lab.WorkerStats) bool { return s.Connected == 2 })

	// The broker sees each connection coming from its pod's address.
	var wantIPs []string
	for _, name := range []string{"w-0", "w-1"} {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantIPs = append(wantIPs, p.Status.PodIP)
	}
	slices.Sort(wantIPs)
	err := lab.WaitFor(ctx, "connections listed with pod addresses", 20*time.Second, 250*time.Millisecond, func(ctx context.Context) error {
		got, err := peerHosts(ctx, rabbit.ManagementURL())
		if err != nil {
			return err
		}
		if !slices.Equal(got, wantIPs) {
			return fmt.Errorf("peer hosts %v, want %v", got, wantIPs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := admin.Publish(ctx, "/", "work", 10); err != nil {
		t.Fatal(err)
	}
	waitStats(t, workers, "10 acknowledged", func(s lab.WorkerStats) bool { return s.Acked == 10 && s.Busy == 0 })

	// Two long messages keep both workers busy; deleting one pod requeues its message.
	conn, err := amqp.Dial(rabbit.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		err := ch.PublishWithContext(ctx, "", "work", false, false, amqp.Publishing{
			Headers: amqp.Table{lab.WorkerServiceTimeHeader: int64(10 * time.Minute / time.Millisecond)},
			Body:    []byte("long"),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitStats(t, workers, "two busy workers", func(s lab.WorkerStats) bool { return s.Busy == 2 })
	zero := int64(0)
	if err := pods.Delete(ctx, "w-0", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitStats(t, workers, "one busy worker killed", func(s lab.WorkerStats) bool {
		return s.KilledBusy == 1 && s.Connected == 1 && s.Busy == 1
	})
	err = lab.WaitFor(ctx, "the killed worker's message requeued", 20*time.Second, 100*time.Millisecond, func(context.Context) error {
		q, err := ch.QueueDeclarePassive("work", true, false, false, false, nil)
		if err != nil {
			return err
		}
		if q.Messages != 1 {
			return fmt.Errorf("%d ready messages", q.Messages)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := workers.BusyPods(); !slices.Equal(got, []string{"w-1"}) {
		t.Errorf("busy pods = %v, want [w-1]", got)
	}

	// Closing the emulator is not a pod deletion: it does not count as a killed worker.
	workers.Close()
	if got := workers.Stats(); got.KilledBusy != 1 || got.Connected != 0 {
		t.Errorf("after Close: %+v, want KilledBusy 1, Connected 0", got)
	}
}

func waitStats(t *testing.T, w *lab.Workers, what string, ok func(lab.WorkerStats) bool) {
	t.Helper()
	err := lab.WaitFor(t.Context(), what, 30*time.Second, 50*time.Millisecond, func(context.Context) error {
		if s := w.Stats(); !ok(s) {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// peerHosts lists the source addresses of the broker's client connections, sorted.
func peerHosts(ctx context.Context, mgmtURL string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mgmtURL+"/api/connections", nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var conns []struct {
		PeerHost string `json:"peer_host"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&conns); err != nil {
		return nil, err
	}
	var hosts []string
	for _, c := range conns {
		if strings.HasPrefix(c.PeerHost, "127.16.") {
			hosts = append(hosts, c.PeerHost)
		}
	}
	slices.Sort(hosts)
	return hosts, nil
}
