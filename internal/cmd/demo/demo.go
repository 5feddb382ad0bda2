package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/headroom-autoscaler/headroom/e2e"
	"github.com/headroom-autoscaler/headroom/internal/kubeyaml"
	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// demoConfig is the demo's command line.
type demoConfig struct {
	trace       string
	window      int // trace seconds played
	speed       int // trace seconds per demo second
	messages    int // worker messages in the whole burst
	loads       int // loader messages
	serviceTime time.Duration
	loadTime    time.Duration
	maxRun      time.Duration
}

// demoNodes are small on purpose: the loaders' memory and the workers' CPU compete for them.
var demoNodes = []lab.NodeSpec{
	{Name: "kwok-node-0", CPU: "2", Memory: "8Gi"},
	{Name: "kwok-node-1", CPU: "2", Memory: "8Gi"},
}

// Queues of the example workloads (manifests/examples): the loader reads "loads", the worker
// every queue matching ^tasks\. (the demo declares one).
const (
	demoNamespace = "jobs"
	loaderQueue   = "loads"
	workerQueue   = "tasks.default"
)

// demoBinaries are built into the cache when missing, each with a progress line.
var demoBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "keda-operator", "keda-adapter"}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c demoConfig
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.trace, "trace", "simulate/testdata/traces/worldcup98-per-second.csv", "arrival trace: CSV of period,count per second")
	fs.IntVar(&c.window, "window", 2400, "trace seconds to play")
	fs.IntVar(&c.speed, "speed", 60, "trace seconds per demo second")
	fs.IntVar(&c.messages, "messages", 600, "worker messages in the whole burst, shaped like the trace")
	fs.IntVar(&c.loads, "loads", 12, "loader messages, spread over the burst")
	fs.DurationVar(&c.serviceTime, "service-time", time.Second, "how long a worker holds a task")
	fs.DurationVar(&c.loadTime, "load-time", 8*time.Second, "how long a loader holds a load")
	fs.DurationVar(&c.maxRun, "max", 4*time.Minute, "stop the scenario after this long even if work is left")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.window <= 0 || c.speed <= 0:
		return fmt.Errorf("-window %d and -speed %d must be positive", c.window, c.speed)
	case c.messages < 0 || c.loads < 0:
		return fmt.Errorf("-messages %d and -loads %d must not be negative", c.messages, c.loads)
	case c.serviceTime < 0 || c.loadTime < 0 || c.maxRun <= 0:
		return fmt.Errorf("-service-time %v, -load-time %v must not be negative and -max %v must be positive", c.serviceTime, c.loadTime, c.maxRun)
	}
	root, err := e2e.ModuleRoot()
	if err != nil {
		return err
	}
	tracePath := c.trace
	if !filepath.IsAbs(tracePath) {
		tracePath = filepath.Join(root, tracePath)
	}
	burst, err := readBurst(tracePath, c.window, c.speed, c.messages)
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, "headroom demo: RabbitMQ -> scaler -> KEDA -> HPA -> Deployment -> scheduler -> KWOK nodes, all on loopback")
	fmt.Fprintln(stdout, "1. build what is missing (cached under "+lab.CacheDir()+")")
	for _, name := range demoBinaries {
		if lab.Built(name) {
			continue
		}
		start := time.Now()
		fmt.Fprintf(stdout, "  %-44s", "build "+name+" ...")
		if _, err := lab.EnsureBinary(ctx, name); err != nil {
			fmt.Fprintln(stdout, " failed")
			return err
		}
		fmt.Fprintf(stdout, " %6.1fs\n", time.Since(start).Seconds())
	}
	fmt.Fprintln(stdout, "2. start everything")
	stack, err := e2e.StartStack(ctx, e2e.StackOptions{Nodes: demoNodes, KEDA: true, Progress: stdout})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "stopping every process the demo started")
		stack.Stop()
	}()

	fmt.Fprintln(stdout, "3. apply manifests/examples (loader, worker) pointed at the local scaler")
	objs, err := exampleManifests(root, stack.ScalerAddress)
	if err != nil {
		return err
	}
	admin := stack.Rabbit.Admin()
	for _, q := range []string{loaderQueue, workerQueue} {
		if err := admin.DeclareQueue(ctx, "/", q); err != nil {
			return err
		}
	}
	client := stack.Kube.Client()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", demoNamespace, err)
	}
	if _, err := lab.ApplyYAML(ctx, stack.Kube, objs); err != nil {
		return err
	}
	var pool []*lab.Workers
	defer func() {
		for _, w := range pool {
			w.Close()
		}
	}()
	for _, wl := range []struct {
		name, queue string
		service     time.Duration
	}{{"loader", loaderQueue, c.loadTime}, {"worker", workerQueue, c.serviceTime}} {
		w, err := lab.StartWorkers(ctx, lab.WorkerOptions{
			Client: client, Namespace: demoNamespace,
			Selector: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/name": wl.name}).String(),
			AMQPURL:  stack.Rabbit.AMQPURL(), Queue: wl.queue, ServiceTime: wl.service,
		})
		if err != nil {
			return err
		}
		pool = append(pool, w)
	}

	fmt.Fprintf(stdout, "4. play %d s of %s at %dx: %d tasks and %d loads; one line per change\n",
		c.window, filepath.Base(c.trace), c.speed, c.messages, c.loads)
	sum := &summary{}
	runCtx, cancel := context.WithTimeout(ctx, c.maxRun)
	defer cancel()
	var wg sync.WaitGroup
	pubDone := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		pubDone <- publishBurst(runCtx, stack.Rabbit.AMQPURL(), burst, c.loads, sum)
	}()
	watchErr := watch(runCtx, stdout, stack, sum, pubDone)
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		fmt.Fprintln(stdout, "interrupted")
		return nil
	}
	if watchErr != nil && !errors.Is(watchErr, context.DeadlineExceeded) {
		return watchErr
	}
	if errors.Is(watchErr, context.DeadlineExceeded) {
		fmt.Fprintf(stdout, "stopped after -max %v with work left\n", c.maxRun)
	}
	var killed int64
	for _, w := range pool {
		killed += w.Stats().KilledBusy
	}
	sum.print(stdout, killed)
	return nil
}

// readBurst reads a per-second arrival trace (period,count) and returns how many worker
// messages to publish in each demo second: the trace's shape over window seconds, played at
// speed trace seconds per demo second, scaled to total messages in all.
func readBurst(path string, window, speed, total int) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	if _, err := r.Read(); err != nil {
		return nil, fmt.Errorf("trace %s: header: %w", path, err)
	}
	buckets := make([]float64, (window+speed-1)/speed)
	var all float64
	for i := 0; i < window; i++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", path, err)
		}
		if len(rec) < 2 {
			return nil, fmt.Errorf("trace %s: line %d: want period,count, got %q", path, i+2, rec)
		}
		n, err := strconv.ParseFloat(rec[1], 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("trace %s: line %d: count %q is not a non-negative number", path, i+2, rec[1])
		}
		buckets[i/speed] += n
		all += n
	}
	if all == 0 {
		return nil, fmt.Errorf("trace %s: no arrivals in the first %d seconds", path, window)
	}
	out := make([]int, len(buckets))
	var carry float64
	for i, b := range buckets {
		exact := b/all*float64(total) + carry
		out[i] = int(math.Floor(exact))
		carry = exact - float64(out[i])
	}
	if carry > 0.5 {
		out[len(out)-1]++
	}
	return out, nil
}

// exampleManifests reads manifests/examples/{loader,worker}.yaml and adapts them to the demo:
// namespace jobs, the local scaler's address, 1 s polling and short cooldowns.
func exampleManifests(root, scalerAddress string) ([]byte, error) {
	var docs []string
	for _, name := range []string{"loader.yaml", "worker.yaml"} {
		path := filepath.Join(root, "manifests", "examples", name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("example manifests: %w", err)
		}
		objs, err := kubeyaml.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("example manifests: %s: %w", path, err)
		}
		for _, obj := range objs {
			obj.SetNamespace(demoNamespace)
			if obj.GetKind() == "ScaledObject" {
				if err := adaptScaledObject(obj, scalerAddress); err != nil {
					return nil, fmt.Errorf("example manifests: %s: %w", path, err)
				}
			}
			b, err := json.Marshal(obj.Object)
			if err != nil {
				return nil, err
			}
			docs = append(docs, string(b))
		}
	}
	return []byte(strings.Join(docs, "\n---\n")), nil
}

func adaptScaledObject(obj *unstructured.Unstructured, scalerAddress string) error {
	for field, v := range map[string]int64{"pollingInterval": 1, "cooldownPeriod": 10} {
		if err := unstructured.SetNestedField(obj.Object, v, "spec", field); err != nil {
			return err
		}
	}
	triggers, _, err := unstructured.NestedSlice(obj.Object, "spec", "triggers")
	if err != nil {
		return err
	}
	for _, tr := range triggers {
		m, ok := tr.(map[string]any)
		if !ok {
			return fmt.Errorf("ScaledObject %s: trigger is %T, want a map", obj.GetName(), tr)
		}
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			return fmt.Errorf("ScaledObject %s: trigger without metadata", obj.GetName())
		}
		md["scalerAddress"] = scalerAddress
		if _, ok := md["idleAfter"]; ok {
			md["idleAfter"] = "5s"
		}
	}
	return unstructured.SetNestedSlice(obj.Object, triggers, "spec", "triggers")
}

// publishBurst publishes burst[i] tasks during demo second i, and the loads evenly over the
// burst, each with its service time in the worker header.
func publishBurst(ctx context.Context, amqpURL string, burst []int, loads int, sum *summary) error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	pub := func(queue string) error {
		err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("job")})
		if err == nil {
			sum.published(queue)
		}
		return err
	}
	loadEvery := max(1, len(burst)/max(1, loads))
	sentLoads := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i, n := range burst {
		if sentLoads < loads && i%loadEvery == 0 {
			if err := pub(loaderQueue); err != nil {
				return err
			}
			sentLoads++
		}
		for j := 0; j < n; j++ {
			if err := pub(workerQueue); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	for ; sentLoads < loads; sentLoads++ {
		if err := pub(loaderQueue); err != nil {
			return err
		}
	}
	return nil
}

// summary collects what the demo prints at the end.
type summary struct {
	mu          sync.Mutex
	start       time.Time
	firstPub    time.Time
	firstWorker time.Time
	drained     time.Time
	publishedN  int
	peak        map[string]int32
	fitAtPeak   map[string]string
	pendingPodS float64
}

func (s *summary) published(string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.firstPub.IsZero() {
		s.firstPub = time.Now()
	}
	s.publishedN++
}

func (s *summary) print(w io.Writer, killed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(w, "summary")
	since := func(t time.Time) string {
		if t.IsZero() || s.firstPub.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%.1fs", t.Sub(s.firstPub).Seconds())
	}
	fmt.Fprintf(w, "  messages published          %d\n", s.publishedN)
	fmt.Fprintf(w, "  time to first worker        %s\n", since(s.firstWorker))
	fmt.Fprintf(w, "  time to drain               %s\n", since(s.drained))
	names := make([]string, 0, len(s.peak))
	for n := range s.peak {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  peak replicas %-14s %d (fit at that moment: %s)\n", n, s.peak[n], s.fitAtPeak[n])
	}
	fmt.Fprintf(w, "  pending pod-seconds         %.1f\n", s.pendingPodS)
	fmt.Fprintf(w, "  busy workers killed         %d\n", killed)
}

// view is one observation of the demo's workloads.
type view struct {
	queues   map[string][2]int // ready, unacked
	workload map[string]wlView
}

// wlView is one workload's line. answer is headroom's (its desired-replicas metric); hpa is
// the HPA's desired count, which lags between one and zero replicas (KEDA itself makes that
// step; the HPA reports it at its next sync); current is the Deployment's spec.
type wlView struct {
	hpa, current, ready int32
	pending             int
	answer, fit, limit  string
}

func (v view) line() string {
	var b strings.Builder
	for _, q := range []string{workerQueue, loaderQueue} {
		d := v.queues[q]
		fmt.Fprintf(&b, "%s=%d+%d ", q, d[0], d[1])
	}
	for _, n := range []string{"worker", "loader"} {
		x := v.workload[n]
		fmt.Fprintf(&b, "| %s answer=%s hpa=%d current=%d ready=%d pending=%d fit=%s limit=%s ", n, x.answer, x.hpa, x.current, x.ready, x.pending, x.fit, x.limit)
	}
	return strings.TrimSpace(b.String())
}

// watch prints one line per change until the burst is published and everything has drained
// back to zero, or ctx ends.
func watch(ctx context.Context, w io.Writer, s *e2e.Stack, sum *summary, pubDone <-chan error) error {
	sum.mu.Lock()
	sum.start = time.Now()
	sum.peak, sum.fitAtPeak = map[string]int32{}, map[string]string{}
	sum.mu.Unlock()
	published := false
	prev := ""
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pubDone:
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			published = true
		case <-tick.C:
		}
		v, err := observeDemo(ctx, s)
		if err != nil {
			continue // a transient read error: the next tick retries
		}
		now := time.Now()
		sum.mu.Lock()
		running := 0
		for n, x := range v.workload {
			sum.pendingPodS += float64(x.pending) * now.Sub(last).Seconds()
			if x.current > sum.peak[n] {
				sum.peak[n], sum.fitAtPeak[n] = x.current, x.fit
			}
			running += int(x.ready)
		}
		if running > 0 && sum.firstWorker.IsZero() {
			sum.firstWorker = now
		}
		work := 0
		for _, q := range v.queues {
			work += q[0] + q[1]
		}
		if published && work == 0 && sum.drained.IsZero() {
			sum.drained = now
		}
		sum.mu.Unlock()
		last = now
		if l := v.line(); l != prev {
			fmt.Fprintf(w, "  %6.1fs  %s\n", time.Since(sum.start).Seconds(), l)
			prev = l
		}
		if published && work == 0 && running == 0 && v.workload["worker"].current == 0 && v.workload["loader"].current == 0 {
			return nil
		}
	}
}

func observeDemo(ctx context.Context, s *e2e.Stack) (view, error) {
	v := view{queues: map[string][2]int{}, workload: map[string]wlView{}}
	qs, err := queueDepths(ctx, s.Rabbit.ManagementURL())
	if err != nil {
		return v, err
	}
	v.queues = qs
	c := s.Kube.Client()
	metrics := scrape(ctx, s)
	pods, err := c.CoreV1().Pods(demoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return v, err
	}
	for _, name := range []string{"worker", "loader"} {
		x := wlView{answer: "-", fit: "-", limit: "-"}
		if d, err := c.AppsV1().Deployments(demoNamespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
			if d.Spec.Replicas != nil {
				x.current = *d.Spec.Replicas
			}
			x.ready = d.Status.ReadyReplicas
		}
		if h, err := c.AutoscalingV2().HorizontalPodAutoscalers(demoNamespace).Get(ctx, "keda-hpa-"+name, metav1.GetOptions{}); err == nil {
			x.hpa = h.Status.DesiredReplicas
		}
		for _, p := range pods.Items {
			if p.Labels["app.kubernetes.io/name"] != name || p.Status.Phase != corev1.PodPending {
				continue
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Reason == corev1.PodReasonUnschedulable {
					x.pending++
				}
			}
		}
		if m, ok := metrics[name]; ok {
			if m.answer != "" {
				x.answer = m.answer
			}
			if m.fit != "" {
				x.fit = m.fit
			}
			if m.limit != "" {
				x.limit = m.limit
			}
		}
		v.workload[name] = x
	}
	return v, nil
}

// queueDepths reads ready and unacknowledged counts of the vhost's queues in one request (the
// list endpoint is exact right after publishing).
func queueDepths(ctx context.Context, mgmt string) (map[string][2]int, error) {
	u := mgmt + "/api/queues/" + url.PathEscape("/") + "?disable_stats=true&enable_queue_totals=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var qs []struct {
		Name    string `json:"name"`
		Ready   int    `json:"messages_ready"`
		Unacked int    `json:"messages_unacknowledged"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&qs); err != nil {
		return nil, err
	}
	out := map[string][2]int{}
	for _, q := range qs {
		out[q.Name] = [2]int{q.Ready, q.Unacked}
	}
	return out, nil
}

type soMetrics struct{ answer, fit, limit string }

// scrape reads the answer, the fit and the limiting factor of each ScaledObject from the
// first scaler replica's /metrics; an unreachable scaler reads as no metrics (nil).
func scrape(ctx context.Context, s *e2e.Stack) map[string]soMetrics {
	if len(s.Scalers) == 0 {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Scalers[0].HTTPAddr+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// parseMetrics picks the demo namespace's ScaledObjects' answer, fit and limiting factor out
// of a text exposition.
func parseMetrics(r io.Reader) map[string]soMetrics {
	out := map[string]soMetrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, lbls, value, ok := parseSample(sc.Text())
		if !ok || lbls["namespace"] != demoNamespace {
			continue
		}
		so := lbls["scaledobject"]
		m := out[so]
		switch {
		case name == "headroom_desired_replicas":
			m.answer = value
		case name == "headroom_fit_replicas":
			m.fit = value
		case name == "headroom_limit" && value == "1":
			m.limit = lbls["limit"]
		default:
			continue
		}
		out[so] = m
	}
	return out
}

// parseSample splits one exposition line `name{k="v",...} value` (no escapes in our labels).
func parseSample(line string) (name string, lbls map[string]string, value string, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, "", false
	}
	open, end := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
	if open < 0 || end < open {
		return "", nil, "", false
	}
	name = line[:open]
	fields := strings.Fields(line[end+1:])
	if len(fields) == 0 {
		return "", nil, "", false
	}
	value = fields[0]
	lbls = map[string]string{}
	for _, kv := range strings.Split(line[open+1:end], ",") {
		k, v, found := strings.Cut(kv, "=")
		if found {
			lbls[k] = strings.Trim(v, `"`)
		}
	}
	return name, lbls, value, true
}
