package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRabbitMQConfigStats(t *testing.T) {
	for _, tc := range []struct {
		stats time.Duration
		want  []string // lines the config holds
		not   []string // and does not
	}{
		{stats: 500 * time.Millisecond, want: []string{"collect_statistics_interval = 500", "management.sample_retention_policies.basic.minute = 1"}},
		{stats: 0, not: []string{"collect_statistics_interval", "sample_retention_policies"}}, // the broker's defaults
	} {
		r := &RabbitMQ{dir: t.TempDir(), amqpPort: 1, mgmtPort: 2}
		if err := r.writeConfig(tc.stats); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(r.dir, "rabbitmq.conf"))
		if err != nil {
			t.Fatal(err)
		}
		conf := string(b)
		if !strings.Contains(conf, "listeners.tcp.default = 127.0.0.1:1") {
			t.Errorf("stats %v: no loopback listener in\n%s", tc.stats, conf)
		}
		for _, w := range tc.want {
			if !strings.Contains(conf, w) {
				t.Errorf("stats %v: config lacks %q:\n%s", tc.stats, w, conf)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(conf, n) {
				t.Errorf("stats %v: config sets %q:\n%s", tc.stats, n, conf)
			}
		}
	}
}

func TestStartRabbitMQBadOptions(t *testing.T) {
	for _, tc := range []struct {
		opts RabbitMQOptions
		want string
	}{
		{RabbitMQOptions{StatsInterval: -time.Second}, "negative stats interval -1s"},
		{RabbitMQOptions{StatsInterval: time.Second, StatsDefaults: true}, "stats interval 1s with the broker's default"},
	} {
		_, err := StartRabbitMQ(t.Context(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartRabbitMQ(%+v) = %v, want an error naming %q", tc.opts, err, tc.want)
		}
	}
}

// TestStartRabbitMQRetriesATakenPort: when a port chosen for the broker is taken before the
// broker binds it (here the distribution port, held by a listener of this test), the start
// picks new ports and succeeds instead of failing the suite that needed a broker. The broker
// is real; only the port choice is steered onto the held port.
func TestStartRabbitMQRetriesATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs a real RabbitMQ broker (run without -short)")
	}
	taken, calls := takePort(t, 4) // amqp, management, prometheus, distribution, epmd
	r, err := StartRabbitMQ(t.Context(), RabbitMQOptions{})
	if errors.Is(err, ErrUnavailable) && !Required() {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("start with the distribution port taken: %v", err)
	}
	defer r.Stop()
	if r.distPort == taken || *calls < 10 {
		t.Errorf("distribution port %d (held %d), %d ports picked: want a second set of ports", r.distPort, taken, *calls)
	}
	if err := r.Admin().get(t.Context(), "/api/overview", nil); err != nil {
		t.Errorf("management API after the retry: %v", err)
	}
}

// TestRestartWaitsForATakenPort: a broker that crashed and whose Prometheus port another
// process holds for a moment comes back on the same ports once the port is given back,
// instead of failing the test that restarts it.
func TestRestartWaitsForATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs a real RabbitMQ broker (run without -short)")
	}
	r, err := StartRabbitMQ(t.Context(), RabbitMQOptions{})
	if errors.Is(err, ErrUnavailable) && !Required() {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	defer func(w time.Duration, f func(error)) { restartWait, restartRetried = w, f }(restartWait, restartRetried)
	restartWait = 100 * time.Millisecond
	r.Kill()
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", r.promPort))
	if err != nil {
		t.Fatalf("hold the broker's Prometheus port: %v", err)
	}
	defer held.Close()
	var retried []error
	restartRetried = func(err error) {
		retried = append(retried, err)
		held.Close() // the other process gives the port back
	}
	if err := r.Restart(t.Context()); err != nil {
		t.Fatalf("restart while the port was held, then given back: %v", err)
	}
	if len(retried) != 1 {
		t.Errorf("%d failed starts before the port was given back, want 1: %v", len(retried), retried)
	}
	if err := r.Admin().get(t.Context(), "/api/overview", nil); err != nil {
		t.Errorf("management API after the restart: %v", err)
	}
	resp, err := http.Get(r.PrometheusURL() + "/metrics")
	if err != nil {
		t.Fatalf("Prometheus endpoint after the restart: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("Prometheus endpoint after the restart: %s", resp.Status)
	}
}

// takePort holds a port for the test and makes the nth port choice of the lab return it, as
// if another process had bound it between FreePort and the component; it returns the port
// and the count of choices made.
func takePort(t *testing.T, nth int) (int, *int) {
	t.Helper()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })
	taken := held.Addr().(*net.TCPAddr).Port
	calls := 0
	freePort = func() (int, error) {
		calls++
		if calls == nth {
			return taken, nil
		}
		return FreePort()
	}
	t.Cleanup(func() { freePort = FreePort })
	return taken, &calls
}

// TestStartPrometheusRetriesATakenPort: a Prometheus whose listen port was taken starts
// again on another.
func TestStartPrometheusRetriesATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs a real Prometheus (run without -short)")
	}
	taken, calls := takePort(t, 1)
	p, err := StartPrometheus(t.Context(), PrometheusOptions{})
	if errors.Is(err, ErrUnavailable) && !Required() {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("start with the port taken: %v", err)
	}
	defer p.Stop()
	if strings.HasSuffix(p.URL, ":"+strconv.Itoa(taken)) || *calls != 2 {
		t.Errorf("url %s (held %d), %d ports picked: want a second port", p.URL, taken, *calls)
	}
}

// TestStartKubeRetriesATakenPort: a control plane whose etcd client port was taken starts
// again on new ports (etcd and the API server only).
func TestStartKubeRetriesATakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs the control plane binaries (run without -short)")
	}
	taken, calls := takePort(t, 1)
	k, err := StartKube(t.Context(), KubeOptions{NoControllerManager: true, NoScheduler: true, NoKWOK: true})
	if errors.Is(err, ErrUnavailable) && !Required() {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("start with etcd's port taken: %v", err)
	}
	defer k.Stop()
	if *calls < 16 {
		t.Errorf("%d ports picked: want a second set of 8", *calls)
	}
	if _, err := k.Client().CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Errorf("the API server after the retry (held %d): %v", taken, err)
	}
}

// TestWaitForStopsWhenTheProcessExited: a check that reports its process gone ends the
// wait at its first answer instead of polling it until the timeout.
func TestWaitForStopsWhenTheProcessExited(t *testing.T) {
	calls := 0
	err := WaitFor(t.Context(), "broker", time.Hour, time.Millisecond, func(context.Context) error {
		calls++
		return fmt.Errorf("rabbitmq-server: %w", errExited)
	})
	if !errors.Is(err, errExited) || calls != 1 {
		t.Errorf("got %v after %d checks, want errExited after one", err, calls)
	}
}
