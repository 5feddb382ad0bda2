package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
)

// TestServeProcess builds the binary and runs `scaler serve` as its own process, as KEDA
// (and the conformance module) meet it: configured through the environment, against a real
// broker and a real control plane; it must answer from both, then exit 0 on SIGTERM. The
// depths come from the broker's Prometheus endpoint (HEADROOM_BROKER_<NAME>_METRICS_URL); the
// end-to-end suite and the conformance module read the management API's listing. The
// endpoint list names a second node that does not answer.
func TestServeProcess(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane and RabbitMQ broker")
	rmq, err := lab.StartRabbitMQ(t.Context(), lab.RabbitMQOptions{})
	labtest.Check(t, "RabbitMQ broker", err)
	defer rmq.Stop()
	k := labtest.Kube(t, lab.KubeOptions{})
	ctx := t.Context()

	// One node of 4 CPUs; a Deployment of 2 replicas requesting 1 CPU each: once its pods
	// are placed, 2 more fit.
	if err := k.AddNode(ctx, lab.NodeSpec{Name: "proc-a", CPU: "4", Memory: "16Gi"}); err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	labels := map[string]string{"app": "loader"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "loader", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "w", Image: "loader", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}}},
		},
	}
	if _, err := k.Client().AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := rmq.Admin().DeclareQueue(ctx, "/", "loads"); err != nil {
		t.Fatal(err)
	}
	if err := rmq.Admin().Publish(ctx, "/", "loads", 10); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "scaler")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = lab.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	grpcAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"HEADROOM_GRPC_ADDR="+grpcAddr, "HEADROOM_HTTP_ADDR="+httpAddr, "HEADROOM_KUBECONFIG="+k.Kubeconfig,
		"HEADROOM_BROKER=main="+rmq.ManagementURL(), "HEADROOM_BROKER_MAIN_USERNAME=guest", "HEADROOM_BROKER_MAIN_PASSWORD=guest",
		// A second node that does not answer (nothing listens on its port): the first
		// node's queues still read, and the refreshes count as partial.
		fmt.Sprintf("HEADROOM_BROKER_MAIN_METRICS_URL=%s,http://127.0.0.1:%d", rmq.PrometheusURL(), ports[2]),
		"HEADROOM_REFRESH=250ms", "HEADROOM_LOG_LEVEL=debug")
	p, err := lab.Start("scaler", cmd, filepath.Join(dir, "scaler.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()

	if err := lab.WaitFor(ctx, "scaler ready", 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, p.Tail(4000))
	}

	// Profiles are served only when asked for (--pprof).
	if resp, err := http.Get("http://" + httpAddr + "/debug/pprof/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: %v %v, want 404", resp.Status, err)
	} else {
		resp.Body.Close()
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	// No ScaledObject CRD here: the metadata names the target itself.
	ref := &pb.ScaledObjectRef{Namespace: "default", Name: "loader", ScalerMetadata: map[string]string{
		"scalerAddress": grpcAddr, "queue": "loads", "stepPods": "100", "scaleTargetKind": "Deployment", "scaleTargetName": "loader"}}
	var got float64
	if err := lab.WaitFor(ctx, "GetMetrics = 4", 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		resp, err := client.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref})
		if err != nil {
			return err
		}
		if got = resp.MetricValues[0].MetricValueFloat; got != 4 {
			return fmt.Errorf("GetMetrics = %v, want 4 (2 running + 2 that fit; the queue needs 10)", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\n%s", err, p.Tail(4000))
	}

	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^headroom_broker_partial_reads_total\{broker="main"\} ([0-9]+)$`).FindSubmatch(exposition); m == nil || string(m[1]) == "0" {
		t.Errorf("partial reads in /metrics: %q, want some (the second node does not answer)", m)
	}

	if err := syscall.Kill(p.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatalf("scaler did not exit within 20 s of SIGTERM\n%s", p.Tail(4000))
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\n%s", code, p.Tail(4000))
	}
	if log := p.Tail(2000); !strings.Contains(log, `"msg":"stopped"`) {
		t.Errorf("log lacks the clean-stop line:\n%s", log)
	}
}
