package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// RabbitMQ defaults.
const (
	// DefaultRabbitMQStatsInterval is the collect_statistics_interval the harness sets when
	// RabbitMQOptions.StatsInterval is zero (RabbitMQ's own default is 5 s).
	DefaultRabbitMQStatsInterval = 500 * time.Millisecond

	rabbitStartTimeout = 2 * time.Minute
	rabbitStopGrace    = 20 * time.Second
)

// rabbitServerGlob finds the real server script of Debian's rabbitmq-server package. The
// /usr/sbin wrapper switches to the rabbitmq user and its home, which a test cannot do.
const rabbitServerGlob = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"

// RabbitMQOptions configures StartRabbitMQ. The zero value is usable.
type RabbitMQOptions struct {
	// Dir holds the broker's state: config, mnesia, logs and HOME (the Erlang cookie). Empty
	// means a new temporary directory, removed by Stop.
	Dir string
	// StatsInterval is collect_statistics_interval. Zero means DefaultRabbitMQStatsInterval.
	StatsInterval time.Duration
	// StatsDefaults keeps RabbitMQ's own statistics settings (every 5 s, 5 s samples), as
	// brokers run in production, instead of the harness's fast ones, which tests need to see
	// a publish within a second; StatsInterval must be zero then.
	StatsDefaults bool
	// Join makes the new broker a second node of Join's cluster: it shares Join's epmd and
	// Erlang cookie and joins at its first boot. Stop it before Join, which owns the epmd.
	Join *RabbitMQ
}

// RabbitMQ is a broker started by StartRabbitMQ: Debian's rabbitmq-server with the management
// and Prometheus plugins, its own node name and epmd, every listener on 127.0.0.1.
type RabbitMQ struct {
	dir      string
	ownDir   bool
	amqpPort int
	mgmtPort int
	promPort int
	distPort int
	epmdPort int
	node     string
	join     *RabbitMQ // the node whose cluster (and epmd) this one joined
	env      []string
	script   string

	mu      sync.Mutex
	epmd    *Process
	server  *Process
	stopped bool // by Stop
}

// StartRabbitMQ starts a broker and returns once both AMQP and the management API answer. It
// returns an error wrapping ErrUnavailable when the rabbitmq-server package (or epmd) is not
// installed.
func StartRabbitMQ(ctx context.Context, opts RabbitMQOptions) (*RabbitMQ, error) {
	if opts.StatsInterval < 0 {
		return nil, fmt.Errorf("start rabbitmq: negative stats interval %v", opts.StatsInterval)
	}
	if opts.StatsDefaults && opts.StatsInterval != 0 {
		return nil, fmt.Errorf("start rabbitmq: stats interval %v with the broker's default statistics settings", opts.StatsInterval)
	}
	scripts, _ := filepath.Glob(rabbitServerGlob)
	if len(scripts) == 0 {
		return nil, fmt.Errorf("start rabbitmq: no %s (install the rabbitmq-server package): %w", rabbitServerGlob, ErrUnavailable)
	}
	sort.Strings(scripts)
	if _, err := exec.LookPath("epmd"); err != nil {
		return nil, fmt.Errorf("start rabbitmq: epmd not on PATH (install the rabbitmq-server package): %w", ErrUnavailable)
	}
	stats := opts.StatsInterval
	if stats == 0 && !opts.StatsDefaults {
		stats = DefaultRabbitMQStatsInterval
	}

	r := &RabbitMQ{dir: opts.Dir, script: scripts[len(scripts)-1], join: opts.Join}
	if r.dir == "" {
		d, err := os.MkdirTemp("", "headroom-rabbitmq-")
		if err != nil {
			return nil, fmt.Errorf("start rabbitmq: %w", err)
		}
		r.dir, r.ownDir = d, true
	}
	for attempt := 1; ; attempt++ {
		ports := []*int{&r.amqpPort, &r.mgmtPort, &r.promPort, &r.distPort, &r.epmdPort}
		if r.join != nil {
			r.epmdPort, ports = r.join.epmdPort, ports[:4]
		}
		for _, p := range ports {
			port, err := freePort()
			if err != nil {
				r.removeDir()
				return nil, fmt.Errorf("start rabbitmq: %w", err)
			}
			*p = port
		}
		if err := r.writeConfig(stats); err != nil {
			r.removeDir()
			return nil, fmt.Errorf("start rabbitmq: %w", err)
		}
		if r.join == nil {
			if err := r.startEPMD(ctx); err != nil {
				r.removeDir()
				return nil, err
			}
		}
		err := r.startServer(ctx)
		if err == nil {
			return r, nil
		}
		if attempt == startAttempts || !portTaken(err) {
			_ = r.Stop()
			return nil, err
		}
		// A port FreePort found free was taken before the broker bound it (any process's
		// outgoing connection may get it as its local port): again, on new ports. The broker
		// stopped before opening any listener, and the taken port stays open by its other
		// owner, so there is no port to wait for.
		r.stopProcesses()
	}
}

func (r *RabbitMQ) writeConfig(stats time.Duration) error {
	for _, sub := range []string{"mnesia", "log", "home"} {
		if err := os.MkdirAll(filepath.Join(r.dir, sub), 0o755); err != nil {
			return err
		}
	}
	// The management plugin aggregates what the HTTP API shows once per smallest sample
	// interval of its retention policies (5 s by default), whatever collect_statistics_interval
	// says; 1 s is the smallest it accepts.
	conf := fmt.Sprintf(`listeners.tcp.default = 127.0.0.1:%d
management.tcp.ip = 127.0.0.1
management.tcp.port = %d
prometheus.tcp.ip = 127.0.0.1
prometheus.tcp.port = %d
log.console = true
log.console.level = info
log.file = false
`, r.amqpPort, r.mgmtPort, r.promPort)
	r.node = fmt.Sprintf("headroom%d@localhost", r.amqpPort)
	if r.join != nil { // joins at its first boot
		conf += "cluster_formation.peer_discovery_backend = classic_config\n" +
			"cluster_formation.classic_config.nodes.1 = " + r.join.node + "\n"
	}
	if stats > 0 { // else the broker's defaults
		conf += fmt.Sprintf(`collect_statistics_interval = %d
management.sample_retention_policies.global.minute = 1
management.sample_retention_policies.basic.minute = 1
management.sample_retention_policies.detailed.10 = 1
`, stats.Milliseconds())
	}
	files := map[string]string{
		"rabbitmq.conf":     conf,
		"enabled_plugins":   "[rabbitmq_management,rabbitmq_prometheus].\n",
		"rabbitmq-env.conf": "", // keep /etc/rabbitmq/rabbitmq-env.conf out
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	if r.join != nil {
		// Nodes of one cluster share the Erlang cookie, which the first node wrote into its
		// HOME at its start.
		cookie, err := os.ReadFile(filepath.Join(r.join.dir, "home", ".erlang.cookie"))
		if err != nil {
			return fmt.Errorf("join %s: %w", r.join.node, err)
		}
		if err := os.WriteFile(filepath.Join(r.dir, "home", ".erlang.cookie"), cookie, 0o400); err != nil {
			return err
		}
	}
	r.env = append(filteredEnv(),
		"HOME="+filepath.Join(r.dir, "home"),
		"RABBITMQ_NODENAME="+r.node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", r.amqpPort),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", r.distPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		fmt.Sprintf("ERL_EPMD_PORT=%d", r.epmdPort),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(r.dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(r.dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(r.dir, "advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(r.dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(r.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(r.dir, "beam.pid"),
		"RABBITMQ_LOGS=-",
		// Make the script exec the Erlang VM instead of running it behind a signal-forwarding
		// shell: the VM is then the process lab.Start watches, and the parent-death signal
		// reaches it if the test binary dies. -noinput keeps the Erlang shell off.
		"RABBITMQ_ALLOW_INPUT=true",
		// -start_epmd false: never daemonise an epmd of its own (it would outlive the test);
		// ours is already up. The distribution listener stays on loopback.
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-noinput -start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
		"RABBITMQ_CTL_ERL_ARGS=-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
	)
	return nil
}

// filteredEnv is the parent environment without variables that would point the broker at
// another node or configuration.
func filteredEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RABBITMQ_") || strings.HasPrefix(kv, "ERL_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (r *RabbitMQ) startEPMD(ctx context.Context) error {
	// Our own epmd on loopback: otherwise the broker starts a daemonised one on 0.0.0.0:4369
	// that outlives it.
	cmd := exec.Command("epmd", "-address", "127.0.0.1", "-port", Itoa(r.epmdPort))
	cmd.Env = r.env
	p, err := Start("epmd", cmd, filepath.Join(r.dir, "epmd.log"))
	if err != nil {
		return fmt.Errorf("start rabbitmq: %w", err)
	}
	r.mu.Lock()
	r.epmd = p
	r.mu.Unlock()
	err = WaitFor(ctx, "epmd", 10*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
		return dialCheck(ctx, r.epmdPort, p)
	})
	if err != nil {
		_ = p.Stop(time.Second)
		return fmt.Errorf("start rabbitmq: %w; log: %s", err, p.Tail(2000))
	}
	return nil
}

func (r *RabbitMQ) startServer(ctx context.Context) error {
	cmd := exec.Command(r.script)
	cmd.Env = r.env
	cmd.Dir = r.dir
	p, err := Start("rabbitmq-server", cmd, filepath.Join(r.dir, "server.log"))
	if err != nil {
		return fmt.Errorf("start rabbitmq: %w", err)
	}
	r.mu.Lock()
	r.server = p
	r.mu.Unlock()
	err = WaitFor(ctx, "rabbitmq", rabbitStartTimeout, 100*time.Millisecond, func(ctx context.Context) error {
		if err := dialCheck(ctx, r.amqpPort, p); err != nil {
			return err
		}
		if err := dialCheck(ctx, r.promPort, p); err != nil {
			return err
		}
		if err := r.Admin().get(ctx, "/api/overview", nil); err != nil {
			return err
		}
		if r.join != nil { // a node that failed to join boots on its own: say so
			return r.inCluster(ctx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("start rabbitmq: %w; log: %s", err, p.Tail(3000))
	}
	return nil
}

func dialCheck(ctx context.Context, port int, p *Process) error {
	select {
	case <-p.Exited():
		return fmt.Errorf("%s: %w", p.Name, errExited)
	default:
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	return c.Close()
}

// inCluster checks that the cluster, as this node sees it, runs both this node and the one it
// joined.
func (r *RabbitMQ) inCluster(ctx context.Context) error {
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := r.Admin().get(ctx, "/api/nodes", &nodes); err != nil {
		return err
	}
	running := map[string]bool{}
	for _, n := range nodes {
		running[n.Name] = n.Running
	}
	if !running[r.node] || !running[r.join.node] {
		return fmt.Errorf("nodes %+v: want %s and %s running in one cluster", nodes, r.node, r.join.node)
	}
	return nil
}

// Node is the broker's Erlang node name.
func (r *RabbitMQ) Node() string { return r.node }

// AMQPURL is amqp://guest:guest@127.0.0.1:PORT/ (guest may log in from loopback).
func (r *RabbitMQ) AMQPURL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.amqpPort)
}

// ManagementURL is http://127.0.0.1:PORT, without credentials (guest/guest).
func (r *RabbitMQ) ManagementURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", r.mgmtPort)
}

// PrometheusURL is http://127.0.0.1:PORT of the rabbitmq_prometheus plugin's endpoint (no
// credentials needed).
func (r *RabbitMQ) PrometheusURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", r.promPort)
}

// AMQPAddr is 127.0.0.1:PORT of the AMQP listener.
func (r *RabbitMQ) AMQPAddr() string { return fmt.Sprintf("127.0.0.1:%d", r.amqpPort) }

// Dir is the state directory (logs are in server.log there).
func (r *RabbitMQ) Dir() string { return r.dir }

// LogTail returns the last n bytes of the broker's log, for test failures.
func (r *RabbitMQ) LogTail(n int) string { return tail(filepath.Join(r.dir, "server.log"), n) }

// Stop stops the broker, then epmd, by PID, and removes the state directory when
// StartRabbitMQ created it. It is safe to call more than once.
func (r *RabbitMQ) Stop() error {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.stopProcesses(r.listeners()...)
	r.removeDir()
	return nil
}

// stopProcesses stops the broker, waiting until the ports given are closed, then epmd, by
// PID.
func (r *RabbitMQ) stopProcesses(ports ...int) {
	r.stopServer(ports...)
	r.mu.Lock()
	epmd := r.epmd
	r.epmd = nil
	r.mu.Unlock()
	if epmd != nil {
		_ = epmd.Stop(2 * time.Second)
	}
}

// stopServer stops the broker and waits until the ports given are closed.
func (r *RabbitMQ) stopServer(ports ...int) {
	r.mu.Lock()
	srv := r.server
	r.server = nil
	r.mu.Unlock()
	if srv != nil {
		_ = srv.Stop(rabbitStopGrace)
		r.waitClosed(ports...)
	}
}

// listeners are the broker's own ports (epmd's is not).
func (r *RabbitMQ) listeners() []int {
	return []int{r.amqpPort, r.mgmtPort, r.promPort, r.distPort}
}

// waitClosed waits until the broker's listeners are gone. The process group receives the
// signal at once, but the Erlang VM can outlive the wrapper script that Process waits for by
// a few hundred milliseconds.
func (r *RabbitMQ) waitClosed(ports ...int) {
	_ = WaitFor(context.Background(), "rabbitmq to exit", 15*time.Second, 50*time.Millisecond, func(ctx context.Context) error {
		for _, port := range ports {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err == nil {
				c.Close()
				return fmt.Errorf("port %d still open", port)
			}
		}
		return nil
	})
}

func (r *RabbitMQ) removeDir() {
	if r.ownDir {
		_ = os.RemoveAll(r.dir)
	}
}

// Kill stops the broker at once with SIGKILL, as a crash would; epmd keeps running so that
// Restart can bring the broker back.
func (r *RabbitMQ) Kill() {
	r.mu.Lock()
	srv := r.server
	r.server = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Kill()
		r.waitClosed(r.listeners()...)
	}
}

// restartWait is how long Restart waits between two starts when one of the broker's ports was
// taken; restartRetried is told of each such failure. Variables, for a test to steer.
var (
	restartWait    = time.Second
	restartRetried = func(error) {}
)

// Restart stops the broker (if it runs) and starts it again on the same ports and state
// directory, so durable queues and users survive. The ports cannot change (clients hold the
// broker's URLs): when another process took one while the broker was down (an outgoing
// connection's source port, another test binary's FreePort), Restart waits for it to be
// given back and starts again, startAttempts times in all.
func (r *RabbitMQ) Restart(ctx context.Context) error {
	r.stopServer(r.listeners()...)
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if stopped {
		return errors.New("restart rabbitmq: already stopped")
	}
	for attempt := 1; ; attempt++ {
		err := r.startServer(ctx)
		if err == nil || attempt == startAttempts || !portTaken(err) {
			return err
		}
		restartRetried(err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(restartWait):
		}
	}
}

// Admin returns a client for the management API as the administrator guest.
func (r *RabbitMQ) Admin() *RabbitAdmin {
	return &RabbitAdmin{base: r.ManagementURL(), user: "guest", password: "guest"}
}

// RabbitAdmin declares what tests need over the management API.
type RabbitAdmin struct {
	base, user, password string
}

// AddVHost creates a vhost and gives guest full rights on it.
func (a *RabbitAdmin) AddVHost(ctx context.Context, vhost string) error {
	if err := a.do(ctx, http.MethodPut, "/api/vhosts/"+url.PathEscape(vhost), struct{}{}); err != nil {
		return err
	}
	return a.SetPermissions(ctx, vhost, a.user)
}

// AddUser creates a user with a password and tags ("administrator", "monitoring", or "").
func (a *RabbitAdmin) AddUser(ctx context.Context, name, password, tags string) error {
	return a.do(ctx, http.MethodPut, "/api/users/"+url.PathEscape(name),
		map[string]string{"password": password, "tags": tags})
}

// SetPermissions gives user configure, write and read rights on every resource of vhost.
func (a *RabbitAdmin) SetPermissions(ctx context.Context, vhost, user string) error {
	return a.do(ctx, http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user),
		map[string]string{"configure": ".*", "write": ".*", "read": ".*"})
}

// DeclareQueue declares a durable classic queue.
func (a *RabbitAdmin) DeclareQueue(ctx context.Context, vhost, name string) error {
	return a.do(ctx, http.MethodPut, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name),
		map[string]any{"durable": true, "auto_delete": false})
}

// DeclareQueueOn declares a durable classic queue whose process runs on the cluster node
// given (RabbitMQ.Node).
func (a *RabbitAdmin) DeclareQueueOn(ctx context.Context, vhost, name, node string) error {
	return a.do(ctx, http.MethodPut, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name),
		map[string]any{"durable": true, "auto_delete": false, "node": node})
}

// DeclareQueues declares many durable queues in one request (a definitions import).
func (a *RabbitAdmin) DeclareQueues(ctx context.Context, vhost string, names ...string) error {
	type q struct {
		Name       string         `json:"name"`
		VHost      string         `json:"vhost"`
		Durable    bool           `json:"durable"`
		AutoDelete bool           `json:"auto_delete"`
		Arguments  map[string]any `json:"arguments"`
	}
	qs := make([]q, len(names))
	for i, n := range names {
		qs[i] = q{Name: n, VHost: vhost, Durable: true, Arguments: map[string]any{}}
	}
	return a.do(ctx, http.MethodPost, "/api/definitions", map[string]any{"queues": qs})
}

// DeleteQueue deletes a queue.
func (a *RabbitAdmin) DeleteQueue(ctx context.Context, vhost, name string) error {
	return a.do(ctx, http.MethodDelete, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name), nil)
}

// PurgeQueue removes every ready message of a queue.
func (a *RabbitAdmin) PurgeQueue(ctx context.Context, vhost, name string) error {
	return a.do(ctx, http.MethodDelete, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(name)+"/contents", nil)
}

// Publish sends n persistent messages to a queue through the default exchange.
func (a *RabbitAdmin) Publish(ctx context.Context, vhost, queue string, n int) error {
	for i := 0; i < n; i++ {
		body := map[string]any{
			"properties":       map[string]any{"delivery_mode": 2},
			"routing_key":      queue,
			"payload":          fmt.Sprintf("m%d", i),
			"payload_encoding": "string",
		}
		var out struct {
			Routed bool `json:"routed"`
		}
		path := "/api/exchanges/" + url.PathEscape(vhost) + "/amq.default/publish"
		if err := a.request(ctx, http.MethodPost, path, body, &out); err != nil {
			return err
		}
		if !out.Routed {
			return fmt.Errorf("publish to %s/%s: not routed (no such queue?)", vhost, queue)
		}
	}
	return nil
}

func (a *RabbitAdmin) get(ctx context.Context, path string, out any) error {
	return a.request(ctx, http.MethodGet, path, nil, out)
}

func (a *RabbitAdmin) do(ctx context.Context, method, path string, body any) error {
	return a.request(ctx, method, path, body, nil)
}

func (a *RabbitAdmin) request(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.SetBasicAuth(a.user, a.password)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}
