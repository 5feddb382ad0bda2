package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// serveConfig is the command line of `scaler serve`.
type serveConfig struct {
	grpcAddr, httpAddr     string
	kubeconfig             string
	brokers                listFlag
	brokerMetrics          nodeListFlag
	metricsURLs            map[string][]string // brokerMetrics by broker name
	credentialsFile        string
	refresh, maxAge        time.Duration
	tlsCert, tlsKey, tlsCA string
	scalerAddresses        listFlag
	logFormat, logLevel    string
	shutdownGrace          time.Duration
	patchQPS               float64
	patchBurst             int
	noDeletionCost         bool
	pprof                  bool
}

// listFlag is a repeatable flag; its environment variable holds a comma- or space-separated
// list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
func (l *listFlag) splitEnv(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
}

// nodeListFlag is a listFlag of NAME=URL[,URL...] entries (--broker-metrics): in its
// environment variable a URL on its own, after a separator, is one more node of the entry
// before it, as in "main=http://r-0:15692,http://r-1:15692 other=http://q:15692". A broker
// name never starts with a scheme, so nothing else reads as one.
type nodeListFlag struct{ listFlag }

func (l *nodeListFlag) splitEnv(v string) []string {
	var out []string
	for _, e := range l.listFlag.splitEnv(v) {
		low := strings.ToLower(e)
		if n := len(out); n > 0 && (strings.HasPrefix(low, "http://") || strings.HasPrefix(low, "https://")) {
			out[n-1] += "," + e
			continue
		}
		out = append(out, e)
	}
	return out
}

// envName is the environment variable of a flag: HEADROOM_ and the name upper-cased.
func envName(flagName string) string {
	return "HEADROOM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseServe(args []string, stderr io.Writer, getenv func(string) string) (*serveConfig, error) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("scaler serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.grpcAddr, "grpc-addr", ":9090", "address of the gRPC server KEDA calls (ExternalScaler and grpc.health.v1)")
	fs.StringVar(&c.httpAddr, "http-addr", ":8080", "address of the HTTP server: /metrics, /healthz (live), /readyz (caches synced, brokers reachable)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file; default: the in-cluster configuration, else $KUBECONFIG (or ~/.kube/config)")
	fs.Var(&c.brokers, "broker", "a broker as NAME=URL, repeatable; http(s):// reads the management API (recommended), amqp(s):// reads queues by passive declare. Environment: a comma- or space-separated list")
	fs.Var(&c.brokerMetrics, "broker-metrics", "a broker's Prometheus endpoints (the rabbitmq_prometheus plugin, RabbitMQ 3.10 or later) as NAME=URL[,URL...], one URL per node of the cluster (each node reports only the queues it hosts), e.g. main=http://rabbit-0.rabbit-nodes:15692,http://rabbit-1.rabbit-nodes:15692, repeatable for other brokers, for a management-API broker: depth-only refreshes read /metrics/detailed there, at a fraction of the broker's CPU of listing /api/queues, with depths up to one statistics interval old (5 s by default). Also HEADROOM_BROKER_<NAME>_METRICS_URL")
	fs.StringVar(&c.credentialsFile, "broker-credentials-file", "", "file of broker credentials, one 'NAME=USERNAME:PASSWORD' per line; HEADROOM_BROKER_<NAME>_USERNAME/_PASSWORD override it, and both override the URL's")
	fs.DurationVar(&c.refresh, "refresh", queue.DefaultRefresh, "how often each broker is read (one request per broker per interval serves every ScaledObject)")
	fs.DurationVar(&c.maxAge, "max-snapshot-age", 0, "answer Unavailable when the last successful broker read is older than this; default 3 × --refresh")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate for the gRPC server (with --tls-key); reloaded when the file changes")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.tlsCA, "tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mutual TLS)")
	fs.Var(&c.scalerAddresses, "scaler-address", "scalerAddress by which ScaledObjects name this scaler (e.g. headroom.keda.svc:9090), repeatable; default: every external trigger that names a queue")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug (one line per decision), info, warn or error")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight calls may take to finish at shutdown")
	fs.Float64Var(&c.patchQPS, "patch-qps", server.DefaultPatchQPS, "client-side rate limit of pod-deletion-cost patches, per second")
	fs.IntVar(&c.patchBurst, "patch-burst", server.DefaultPatchBurst, "burst of pod-deletion-cost patches above --patch-qps")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's runtime profiles under /debug/pprof/ on --http-addr (off by default: they reveal the process's internals and cost CPU while taken)")
	fs.BoolVar(&c.noDeletionCost, "no-deletion-cost", false, "do not annotate pods with controller.kubernetes.io/pod-deletion-cost (busy workers still hold the scale-down; the ReplicaSet controller then picks victims on its own)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: scaler serve [flags]\n\nRuns the KEDA external scaler. Every flag can also be set by an environment variable,\nnamed after the flag: HEADROOM_ and the name upper-cased with '-' as '_' (--grpc-addr is\nHEADROOM_GRPC_ADDR); the command line wins.\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "[]" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(fs.Output(), "  --%s\n        %s%s\n        env %s\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if set[f.Name] || v == "" || envErr != nil {
			return
		}
		values := []string{v}
		if l, isList := f.Value.(interface{ splitEnv(string) []string }); isList {
			values = l.splitEnv(v)
		}
		for _, x := range values {
			if err := f.Value.Set(x); err != nil {
				envErr = fmt.Errorf("%s=%q: %v: %w", envName(f.Name), queue.RedactURL(v), err, errUsage)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	switch {
	case len(c.brokers) == 0:
		return nil, fmt.Errorf("no broker: give --broker NAME=URL (or %s): %w", envName("broker"), errUsage)
	case c.refresh <= 0:
		return nil, fmt.Errorf("--refresh %v: must be positive: %w", c.refresh, errUsage)
	case c.maxAge < 0:
		return nil, fmt.Errorf("--max-snapshot-age %v: must not be negative: %w", c.maxAge, errUsage)
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return nil, fmt.Errorf("--tls-cert and --tls-key go together (got cert %q, key %q): %w", c.tlsCert, c.tlsKey, errUsage)
	case c.tlsCA != "" && c.tlsCert == "":
		return nil, fmt.Errorf("--tls-client-ca %q needs --tls-cert and --tls-key: %w", c.tlsCA, errUsage)
	case c.logFormat != "json" && c.logFormat != "text":
		return nil, fmt.Errorf("--log-format %q: want json or text: %w", c.logFormat, errUsage)
	}
	if c.maxAge == 0 {
		c.maxAge = 3 * c.refresh
	}
	var err error
	if c.metricsURLs, err = brokerMetrics(c.brokers, c.brokerMetrics.listFlag); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errUsage)
	}
	return c, nil
}

// brokerMetrics reads the --broker-metrics entries, NAME=URL[,URL...] each (one URL per node
// of the broker's cluster), by broker name; every name must be a --broker's, once. The URLs
// themselves are checked with their brokers.
func brokerMetrics(brokers, entries []string) (map[string][]string, error) {
	known := map[string]bool{}
	for _, b := range brokers {
		name, _, _ := strings.Cut(b, "=")
		known[strings.TrimSpace(name)] = true
	}
	out := map[string][]string{}
	for _, e := range entries {
		name, u, ok := strings.Cut(e, "=")
		name, u = strings.TrimSpace(name), strings.TrimSpace(u)
		switch {
		case !ok || name == "" || u == "":
			return nil, fmt.Errorf("--broker-metrics %s: want NAME=URL[,URL...]", queue.RedactURL(e))
		case !known[name]:
			return nil, fmt.Errorf("--broker-metrics %s: no --broker named %q", queue.RedactURL(e), name)
		case out[name] != nil:
			return nil, fmt.Errorf("--broker-metrics %s: broker %q given twice (list a cluster's nodes in one entry, comma-separated)", queue.RedactURL(e), name)
		}
		urls, err := queue.SplitURLs(u)
		if err != nil {
			return nil, fmt.Errorf("--broker-metrics %s: %w", name, err)
		}
		out[name] = urls
	}
	return out, nil
}

func newLogger(c *serveConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error: %w", c.logLevel, errUsage)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// restConfig: --kubeconfig, else in-cluster, else $KUBECONFIG / ~/.kube/config.
func restConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
}

// runServe runs the scaler until ctx ends, then shuts down in order: stop reporting
// healthy, end streams, let in-flight calls finish, stop the HTTP server, close the cluster
// watches and the broker connections.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseServe(args, stderr, os.Getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}

	brokers := make([]queue.BrokerConfig, 0, len(c.brokers))
	for _, b := range c.brokers {
		bc, err := queue.ParseBroker(b)
		if err != nil {
			return fmt.Errorf("--broker: %w", err)
		}
		if err := queue.LoadCredentials(&bc, c.credentialsFile, os.Getenv); err != nil {
			return err
		}
		if us, ok := c.metricsURLs[bc.Name]; ok {
			bc.MetricsURLs = us // validated with the broker by NewReader
		}
		brokers = append(brokers, bc)
	}
	reader, err := queue.NewReader(brokers, queue.Options{Refresh: c.refresh})
	if err != nil {
		return err
	}
	defer reader.Close()

	kcfg, err := restConfig(c.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	kcfg.UserAgent = "headroom-scaler/" + buildVersion()
	client, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(kcfg)
	if err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	mc, err := metricsclient.NewForConfig(kcfg)
	if err != nil {
		return fmt.Errorf("metrics client: %w", err)
	}
	cluster, err := capacity.New(capacity.Options{Client: client, Dynamic: dyn, Metrics: mc, ScalerAddresses: c.scalerAddresses})
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	events := &server.KubeEvents{Client: client, Logger: log}
	sopts := server.Options{
		Queue: reader, Brokers: reader,
		Cluster:    &server.Capacity{Cluster: cluster, Addresses: c.scalerAddresses},
		Registerer: reg, Logger: log, Events: events, Version: buildVersion(),
		Refresh: c.refresh, MaxSnapshotAge: c.maxAge,
		PatchQPS: c.patchQPS, PatchBurst: c.patchBurst,
	}
	if !c.noDeletionCost {
		sopts.Pods = server.KubePods{Client: client}
	}
	srv, err := server.New(sopts)
	if err != nil {
		return err
	}

	gopts := srv.GRPCOptions()
	if c.tlsCert != "" {
		rl, err := server.NewCertReloader(c.tlsCert, c.tlsKey, c.tlsCA)
		if err != nil {
			return err
		}
		rl.OnError = func(err error) { log.Warn("reload tls certificate: keeping the previous one", "err", err) }
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(rl.TLSConfig())))
	}
	g := grpc.NewServer(gopts...)
	srv.Register(g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := srv.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/decisions", srv.DecisionsHandler())
	if c.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	glis, err := net.Listen("tcp", c.grpcAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	hlis, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		glis.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	goRun := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	reader.Start(runCtx)
	if err := cluster.Start(runCtx); err != nil {
		glis.Close()
		hlis.Close()
		return err
	}
	srv.Start(runCtx)
	goRun(func() { events.Run(runCtx) })
	goRun(func() {
		if err := g.Serve(glis); err != nil {
			errs <- fmt.Errorf("grpc server: %w", err)
		}
	})
	goRun(func() {
		if err := hsrv.Serve(hlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http server: %w", err)
		}
	})
	goRun(func() { trackReadiness(runCtx, srv, hs, log) })
	log.Info("serving", "grpc", glis.Addr().String(), "http", hlis.Addr().String(), "brokers", reader.Brokers(),
		"refresh", c.refresh, "max_snapshot_age", c.maxAge, "tls", c.tlsCert != "", "mtls", c.tlsCA != "", "version", buildVersion())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errs:
		log.Error("server failed; shutting down", "err", runErr)
	}
	cancel()
	hs.Shutdown()
	srv.Close() // ends open streams
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(c.shutdownGrace):
		log.Warn("in-flight calls did not finish in time; closing them", "grace", c.shutdownGrace)
		g.Stop()
		<-stopped
	}
	sctx, scancel := context.WithTimeout(context.Background(), c.shutdownGrace)
	_ = hsrv.Shutdown(sctx)
	scancel()
	wg.Wait()
	cluster.Close()
	_ = reader.Close()
	log.Info("stopped")
	return runErr
}

// trackReadiness mirrors /readyz into the gRPC health service.
func trackReadiness(ctx context.Context, srv *server.Server, hs *health.Server, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if err := srv.Ready(); err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			if st != last {
				log.Info("not ready", "reason", err)
			}
		}
		if st != last {
			hs.SetServingStatus("", st)
			hs.SetServingStatus("externalscaler.ExternalScaler", st)
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
