package conformance

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/goleak"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// endpoints mirrors the JSON that `demo stack` writes (internal/cmd/demo, type Endpoints).
type endpoints struct {
	Kubeconfig    string   `json:"kubeconfig"`
	AMQPURL       string   `json:"amqpURL"`
	ManagementURL string   `json:"managementURL"`
	Broker        string   `json:"broker"`
	ScalerAddress string   `json:"scalerAddress"`
	ScalerLogs    []string `json:"scalerLogs"`
	Scalers       []struct {
		GRPC string `json:"grpc"`
		HTTP string `json:"http"`
	} `json:"scalers"`
}

// exitUnavailable is the demo program's exit code when a component is missing on this
// machine (it wraps lab.ErrUnavailable).
const exitUnavailable = 3

var (
	stack      endpoints
	skipReason string
	kube       kubernetes.Interface
	dyn        dynamic.Interface
	restConfig *rest.Config
)

func TestMain(m *testing.M) {
	flag.Parse()
	// KEDA's scaler code logs through controller-runtime; its errors reach the tests as errors.
	ctrllog.SetLogger(logr.Discard())
	// Goroutines KEDA's packages start at init (metrics exporters, caches) are not ours.
	ignore := goleak.IgnoreCurrent()
	code := run(m)
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	if testing.Short() {
		skipReason = "skipping: needs the real stack (run without -short)"
		return m.Run()
	}
	stop, err := startStack()
	if err != nil {
		if errors.Is(err, errUnavailable) && !required() {
			skipReason = fmt.Sprintf("skipping: %v; `make deps` installs it, HEADROOM_REAL=1 turns this skip into a failure", err)
			return m.Run()
		}
		fmt.Fprintln(os.Stderr, "conformance: start the stack:", err)
		return 1
	}
	defer stop()
	if restConfig, err = clientcmd.BuildConfigFromFlags("", stack.Kubeconfig); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	restConfig.QPS, restConfig.Burst = 500, 1000
	kube = kubernetes.NewForConfigOrDie(restConfig)
	dyn = dynamic.NewForConfigOrDie(restConfig)
	return m.Run()
}

// needStack skips t when the stack could not be had (see TestMain).
func needStack(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func required() bool { return envOn("HEADROOM_REAL") }

// envOn reports whether the switch variable name is set to anything but "" or "0".
func envOn(name string) bool {
	v := os.Getenv(name)
	return v != "" && v != "0"
}

var errUnavailable = errors.New("component unavailable on this machine")

// startStack builds the main module's demo program and runs `demo stack`, which starts
// RabbitMQ, the control plane and one scaler replica and writes their endpoints. The returned
// function stops it: closing its standard input is the signal, SIGKILL the fallback.
func startStack() (stop func(), err error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil ||
		!strings.HasPrefix(string(b), "module github.com/headroom-autoscaler/headroom\n") {
		return nil, fmt.Errorf("the parent directory %s is not the headroom module (%v)", root, err)
	}
	dir, err := os.MkdirTemp("", "headroom-conformance-")
	if err != nil {
		return nil, err
	}
	demo := filepath.Join(dir, "demo")
	build := exec.Command("go", "build", "-o", demo, "./internal/cmd/demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build the demo program: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "endpoints.json")
	logPath := filepath.Join(dir, "stack.log")
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"stack", "-out", out, "-stdin"}
	// The load comparison may be run against a broker with RabbitMQ's own statistics
	// settings, as in production (the tests need the harness's faster ones).
	if envOn("HEADROOM_BROKER_DEFAULT_STATS") {
		args = append(args, "-broker-default-stats")
	}
	// ... with the scaler reading depths from the broker's Prometheus endpoint
	// (--broker-metrics) instead of the management API's listing ...
	if envOn("HEADROOM_SCALER_PROMETHEUS") {
		args = append(args, "-broker-metrics")
	}
	// ... and with the scaler's own refresh interval (the product's default is 5s).
	if v := os.Getenv("HEADROOM_SCALER_REFRESH"); v != "" {
		args = append(args, "-refresh", v)
	}
	// ... with an environment of its own for experiments (GOGC, GOMAXPROCS: whitespace
	// separated KEY=VALUE pairs), kept out of this test process and the rest of the stack ...
	for _, kv := range strings.Fields(os.Getenv("HEADROOM_SCALER_ENV")) {
		args = append(args, "-scaler-env", kv)
	}
	// ... and pinned to CPUs of its own (a taskset list; run the test under `taskset` to keep
	// everything else off them).
	if v := os.Getenv("HEADROOM_SCALER_CPUS"); v != "" {
		args = append(args, "-scaler-cpus", v)
	}
	cmd := exec.Command(demo, args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, and SIGTERM (a clean stop of everything it started) if this test
	// binary dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if os.Getenv("HEADROOM_KEEP_LAB") == "" {
			os.RemoveAll(dir)
		}
	}
	deadline := time.After(10 * time.Minute)
	for {
		if b, err := os.ReadFile(out); err == nil {
			if err := json.Unmarshal(b, &stack); err != nil {
				stop()
				return nil, fmt.Errorf("decode %s: %w", out, err)
			}
			return stop, nil
		}
		select {
		case err := <-exited:
			exited <- err
			tail := readTail(logPath, 3000)
			stop()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == exitUnavailable {
				return nil, fmt.Errorf("%w: %s", errUnavailable, strings.TrimSpace(lastLine(tail)))
			}
			return nil, fmt.Errorf("demo stack exited: %v\n%s", err, tail)
		case <-deadline:
			stop()
			return nil, errors.New("demo stack did not write its endpoints within 10 minutes")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// scalerLogs returns the tail of every scaler replica's log, for failure messages.
func scalerLogs() string {
	var b strings.Builder
	for _, p := range stack.ScalerLogs {
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(p), readTail(p, 4000))
	}
	return b.String()
}
