package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// Stack defaults.
const (
	// DefaultRefresh is the scaler's broker refresh interval in the stack: short, so that
	// tests and the demo react within a second.
	DefaultRefresh = 500 * time.Millisecond
	// BrokerName is the name the scaler knows the stack's broker by (--broker NAME=URL).
	BrokerName = "main"
)

// DefaultNodes are two small KWOK nodes, so that a burst outgrows the cluster quickly.
var DefaultNodes = []lab.NodeSpec{
	{Name: "kwok-node-0", CPU: "4", Memory: "8Gi"},
	{Name: "kwok-node-1", CPU: "4", Memory: "8Gi"},
}

// StackOptions configures StartStack. The zero value starts RabbitMQ, a control plane with
// DefaultNodes and one scaler replica, without KEDA.
type StackOptions struct {
	// Dir holds every component's state and logs; "" means a new temporary directory,
	// removed by Stop unless HEADROOM_KEEP_LAB is set.
	Dir string
	// Nodes are the fake nodes to create; nil means DefaultNodes, an empty non-nil slice none.
	Nodes []lab.NodeSpec
	// KEDA also starts KEDA's operator and metrics adapter.
	KEDA bool
	// ScalerReplicas is how many `scaler serve` processes run behind the Service address;
	// 0 means 1.
	ScalerReplicas int
	// ScalerBinary is the scaler executable; "" means build ./cmd/scaler of this module.
	ScalerBinary string
	// Refresh is the scaler's --refresh; 0 means DefaultRefresh.
	Refresh time.Duration
	// ScalerArgs are extra `scaler serve` flags.
	ScalerArgs []string
	// ScalerEnv are KEY=VALUE pairs added to the scaler processes' environment (GOGC,
	// GOMAXPROCS, GODEBUG for an experiment), without changing the environment of anything
	// else the stack runs.
	ScalerEnv []string
	// ScalerCPUs pins the scaler processes to these CPUs (a list as taskset takes it:
	// "1", "0,2", "2-3"); "" leaves them where the kernel puts them.
	ScalerCPUs string
	// BrokerMetrics has the scaler read queue depths from the broker's Prometheus endpoint
	// (`--broker-metrics`) instead of the management API's listing.
	BrokerMetrics bool
	// BrokerStatsDefaults runs the broker with RabbitMQ's own statistics settings
	// (lab.RabbitMQOptions.StatsDefaults) instead of the harness's fast ones.
	BrokerStatsDefaults bool
	// Race builds the scaler with the race detector (when ScalerBinary is ""); Races then
	// reports what it found.
	Race bool
	// Progress receives one line per step with the time it took; nil discards.
	Progress io.Writer
}

// Stack is the whole chain on loopback: RabbitMQ, a Kubernetes control plane with KWOK nodes,
// optionally KEDA, and the scaler's replicas behind one Service-like address.
type Stack struct {
	Dir    string
	Rabbit *lab.RabbitMQ
	Kube   *lab.Kube
	KEDA   *lab.KEDA // nil unless StackOptions.KEDA
	// Scalers are the scaler replicas; ScalerAddress reaches whichever is alive, the way a
	// ScaledObject's scalerAddress reaches a Service.
	Scalers       []*Scaler
	ScalerAddress string

	ownDir   bool
	proxy    *Proxy
	stopOnce sync.Once
}

// Scaler is one running `scaler serve` process.
type Scaler struct {
	Process  *lab.Process
	GRPCAddr string // 127.0.0.1:PORT
	HTTPAddr string // 127.0.0.1:PORT (/metrics, /healthz, /readyz)
	bin      string
	args     []string
	env      []string // added to the inherited environment
	cpus     string   // taskset CPU list, "" for none
	log      string
}

// cpuList is the CPU list syntax StackOptions.ScalerCPUs accepts: numbers and ranges, comma
// separated.
var cpuList = regexp.MustCompile(`^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$`)

// StartStack starts the components in order (broker, control plane and nodes, KEDA, scaler)
// and returns once each is ready. On error everything already started is stopped. Missing
// components give an error wrapping lab.ErrUnavailable.
func StartStack(ctx context.Context, opts StackOptions) (s *Stack, err error) {
	if opts.ScalerReplicas < 0 {
		return nil, fmt.Errorf("start stack: scaler replicas %d is negative", opts.ScalerReplicas)
	}
	if opts.Refresh < 0 {
		return nil, fmt.Errorf("start stack: refresh %v is negative", opts.Refresh)
	}
	for _, kv := range opts.ScalerEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("start stack: scaler environment %q is not KEY=VALUE", kv)
		}
	}
	if opts.ScalerCPUs != "" {
		if !cpuList.MatchString(opts.ScalerCPUs) {
			return nil, fmt.Errorf("start stack: scaler CPUs %q is not a CPU list such as 1, 0,2 or 2-3", opts.ScalerCPUs)
		}
		if _, err := exec.LookPath("taskset"); err != nil {
			return nil, fmt.Errorf("start stack: scaler CPUs %q: taskset not on PATH (install util-linux): %w", opts.ScalerCPUs, lab.ErrUnavailable)
		}
	}
	replicas := max(opts.ScalerReplicas, 1)
	refresh := opts.Refresh
	if refresh == 0 {
		refresh = DefaultRefresh
	}
	nodes := opts.Nodes
	if nodes == nil {
		nodes = DefaultNodes
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	step := func(what string, f func() error) error {
		start := time.Now()
		fmt.Fprintf(progress, "  %-44s", what+" ...")
		if err := f(); err != nil {
			fmt.Fprintln(progress, " failed")
			return err
		}
		fmt.Fprintf(progress, " %6.1fs\n", time.Since(start).Seconds())
		return nil
	}

	s = &Stack{Dir: opts.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "headroom-stack-"); err != nil {
			return nil, fmt.Errorf("start stack: %w", err)
		}
		s.ownDir = true
	}
	// The error returns set s to nil before deferred calls run: stop what this one started.
	started := s
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()

	bin := opts.ScalerBinary
	if bin == "" {
		bin = filepath.Join(s.Dir, "scaler")
		what := "build the scaler (go build ./cmd/scaler)"
		if opts.Race {
			what = "build the scaler (go build -race ./cmd/scaler)"
		}
		if err := step(what, func() error { return BuildScaler(ctx, bin, opts.Race) }); err != nil {
			return nil, err
		}
	}
	if err := step("start RabbitMQ", func() error {
		var err error
		s.Rabbit, err = lab.StartRabbitMQ(ctx, lab.RabbitMQOptions{Dir: filepath.Join(s.Dir, "rabbitmq"), StatsDefaults: opts.BrokerStatsDefaults})
		return err
	}); err != nil {
		return nil, err
	}
	if err := step("start etcd, apiserver, controllers, scheduler, KWOK", func() error {
		var err error
		s.Kube, err = lab.StartKube(ctx, lab.KubeOptions{Dir: filepath.Join(s.Dir, "kube")})
		return err
	}); err != nil {
		return nil, err
	}
	if len(nodes) > 0 {
		if err := step(fmt.Sprintf("add %d KWOK nodes", len(nodes)), func() error {
			for _, n := range nodes {
				if err := s.Kube.AddNode(ctx, n); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if opts.KEDA {
		if err := step("start KEDA operator and metrics adapter", func() error {
			var err error
			s.KEDA, err = lab.StartKEDA(ctx, s.Kube, lab.KEDAOptions{})
			return err
		}); err != nil {
			return nil, err
		}
	} else if err := lab.InstallKEDACRDs(ctx, s.Kube); err != nil {
		// The scaler watches ScaledObjects, so their CRD must exist even without KEDA.
		return nil, err
	}

	if err := step(fmt.Sprintf("start %d scaler replica(s)", replicas), func() error {
		var addrs []string
		for i := 0; i < replicas; i++ {
			extra := opts.ScalerArgs
			if opts.BrokerMetrics {
				extra = append(slices.Clip(extra), "--broker-metrics", BrokerName+"="+s.Rabbit.PrometheusURL())
			}
			sc, err := newScaler(bin, i, s, refresh, extra)
			if err != nil {
				return err
			}
			sc.env, sc.cpus = opts.ScalerEnv, opts.ScalerCPUs
			s.Scalers = append(s.Scalers, sc)
			addrs = append(addrs, sc.GRPCAddr)
		}
		var err error
		if s.proxy, err = StartProxy(addrs); err != nil {
			return err
		}
		s.ScalerAddress = s.proxy.Addr()
		for _, sc := range s.Scalers {
			sc.args = append(sc.args, "--scaler-address", s.ScalerAddress)
			if err := sc.Start(ctx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

func newScaler(bin string, i int, s *Stack, refresh time.Duration, extra []string) (*Scaler, error) {
	ports := make([]int, 2)
	for j := range ports {
		p, err := lab.FreePort()
		if err != nil {
			return nil, err
		}
		ports[j] = p
	}
	if ports[0] == ports[1] {
		return nil, errors.New("start scaler: got the same free port twice")
	}
	sc := &Scaler{
		GRPCAddr: "127.0.0.1:" + strconv.Itoa(ports[0]),
		HTTPAddr: "127.0.0.1:" + strconv.Itoa(ports[1]),
		bin:      bin,
		log:      s.Kube.LogPath("scaler-" + strconv.Itoa(i)),
	}
	mgmt := strings.Replace(s.Rabbit.ManagementURL(), "http://", "http://guest:guest@", 1)
	sc.args = append([]string{"serve",
		"--grpc-addr", sc.GRPCAddr, "--http-addr", sc.HTTPAddr,
		"--kubeconfig", s.Kube.Kubeconfig,
		"--broker", BrokerName + "=" + mgmt,
		"--refresh", refresh.String(),
		"--log-format", "text", "--log-level", "debug",
	}, extra...)
	return sc, nil
}

// command is the scaler's command line: under taskset when it is pinned (taskset sets the
// affinity and execs the scaler, so the PID is the scaler's), with its extra environment.
func (sc *Scaler) command() *exec.Cmd {
	name, args := sc.bin, sc.args
	if sc.cpus != "" {
		name, args = "taskset", append([]string{"--cpu-list", sc.cpus, sc.bin}, sc.args...)
	}
	cmd := exec.Command(name, args...)
	if len(sc.env) > 0 {
		cmd.Env = append(os.Environ(), sc.env...)
	}
	return cmd
}

// Start (re)starts the scaler process with its original flags and waits until /readyz
// answers 200.
func (sc *Scaler) Start(ctx context.Context) error {
	p, err := lab.Start(filepath.Base(sc.log), sc.command(), sc.log)
	if err != nil {
		return err
	}
	sc.Process = p
	err = lab.WaitFor(ctx, "scaler ready", 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		select {
		case <-p.Exited():
			return errors.New("scaler exited")
		default:
		}
		return httpStatus(ctx, "http://"+sc.HTTPAddr+"/readyz", http.StatusOK)
	})
	if err != nil {
		return fmt.Errorf("start scaler: %w\n%s", err, p.Tail(3000))
	}
	return nil
}

// Stop stops the scaler process (SIGTERM, then SIGKILL after 10 s).
func (sc *Scaler) Stop() {
	if sc.Process != nil {
		_ = sc.Process.Stop(10 * time.Second)
	}
}

// Races returns the race detector's reports in the scalers' logs (a scaler built with
// StackOptions.Race writes one to its standard error for each race it sees), each with the
// log it is in.
func (s *Stack) Races() ([]string, error) {
	const mark = "WARNING: DATA RACE"
	var out []string
	for _, sc := range s.Scalers {
		b, err := os.ReadFile(sc.log)
		if err != nil {
			return out, err
		}
		// A report runs from the mark to the detector's closing line of "=".
		for _, r := range strings.Split(string(b), mark)[1:] {
			r, _, _ = strings.Cut(r, "==================")
			out = append(out, sc.log+":\n"+mark+r)
		}
	}
	return out, nil
}

// Log is the path of the scaler's log file.
func (sc *Scaler) Log() string { return sc.log }

func httpStatus(ctx context.Context, url string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Stop stops every component in reverse start order. It is safe to call more than once.
func (s *Stack) Stop() {
	s.stopOnce.Do(func() {
		for _, sc := range s.Scalers {
			sc.Stop()
		}
		if s.proxy != nil {
			_ = s.proxy.Close()
		}
		if s.Kube != nil {
			s.Kube.Stop() // also stops KEDA, which joined its stop group
		}
		if s.Rabbit != nil {
			_ = s.Rabbit.Stop()
		}
		if s.ownDir && os.Getenv("HEADROOM_KEEP_LAB") == "" {
			_ = os.RemoveAll(s.Dir)
		}
	})
}

// BuildScaler builds this module's ./cmd/scaler into out with the go tool, with the race
// detector when race is set.
func BuildScaler(ctx context.Context, out string, race bool) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/scaler")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build scaler: %w\n%s", err, b)
	}
	return nil
}

// modulePath is this repository's module path; ModuleRoot looks for its go.mod.
const modulePath = "github.com/headroom-autoscaler/headroom"

// ModuleRoot finds the directory of this module's go.mod, from the working directory up (tests
// run in their package directory, the demo in the repository root, the conformance module in
// a subdirectory with a go.mod of its own).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", modulePath)
		}
		dir = parent
	}
}
