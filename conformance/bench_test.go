package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
)

// The load benchmark of issue 5: 1,000 ScaledObjects, one queue each, polled by 32
// concurrent pollers, through KEDA's own RabbitMQ scaler (HTTP and AMQP) and through KEDA's
// external-scaler client against `scaler serve`, all on the same broker in the same run.
const (
	fleetSize   = 1000
	pollers     = 32
	benchNS     = "bench"
	benchPrefix = "bench-"
)

var fleet struct {
	once sync.Once
	err  error
	// brokerIdle is the broker's CPU per second with the fleet's queues and messages and no
	// client at all: its own background work (statistics for every queue), measured before
	// the ScaledObjects exist, which every later broker figure of the run also holds.
	brokerIdle float64
}

// setupFleet declares the queues (i % 7 messages each), measures the broker's CPU at rest
// and creates the Deployments and ScaledObjects, once per test binary.
func setupFleet(b *testing.B) {
	b.Helper()
	needStack(b)
	fleet.once.Do(func() { fleet.err = buildFleet(context.Background()) })
	if fleet.err != nil {
		b.Fatalf("set up %d ScaledObjects: %v", fleetSize, fleet.err)
	}
}

func buildFleet(ctx context.Context) error {
	type q struct {
		Name       string         `json:"name"`
		VHost      string         `json:"vhost"`
		Durable    bool           `json:"durable"`
		AutoDelete bool           `json:"auto_delete"`
		Arguments  map[string]any `json:"arguments"`
	}
	qs := make([]q, fleetSize)
	for i := range qs {
		qs[i] = q{Name: queueName(i), VHost: "/", Durable: true, Arguments: map[string]any{}}
	}
	if err := mgmt(ctx, http.MethodPost, "/api/definitions", map[string]any{"queues": qs}, nil); err != nil {
		return err
	}
	// Messages: i % 7 per queue, through the management API's publish (one request each).
	for i := 0; i < fleetSize; i++ {
		for j := 0; j < i%7; j++ {
			body := map[string]any{"properties": map[string]any{}, "routing_key": queueName(i), "payload": "job", "payload_encoding": "string"}
			if err := mgmt(ctx, http.MethodPost, "/api/exchanges/%2F/amq.default/publish", body, nil); err != nil {
				return err
			}
		}
	}
	idle, err := brokerAtRest(ctx)
	if err != nil {
		return err
	}
	fleet.brokerIdle = idle
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	errs := make(chan error, fleetSize)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := 0; i < fleetSize; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- createFleetMember(ctx, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func queueName(i int) string { return fmt.Sprintf("%s%04d", benchPrefix, i) }

// fleetMetric is the metric name the scaler gives every ScaledObject (GetMetricSpec).
const fleetMetric = "headroom-desired-replicas"

// fleetMetadata is the trigger metadata of the fleet's i-th ScaledObject, as KEDA sends it.
func fleetMetadata(i int) map[string]string {
	return map[string]string{"scalerAddress": stack.ScalerAddress, "queue": queueName(i), "messagesPerReplica": "5"}
}

func createFleetMember(ctx context.Context, i int) error {
	name := queueName(i)
	metadata := map[string]any{} // unstructured objects hold map[string]any, not map[string]string
	for k, v := range fleetMetadata(i) {
		metadata[k] = v
	}
	d := idleDeployment(benchNS, name, "10m", "16Mi")
	if _, err := kube.AppsV1().Deployments(benchNS).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": name, "namespace": benchNS},
		"spec": map[string]any{
			"scaleTargetRef": map[string]any{"name": name}, "minReplicaCount": int64(0), "maxReplicaCount": int64(10),
			"triggers": []any{map[string]any{"type": "external", "metadata": metadata}},
		},
	}}
	_, err := dyn.Resource(scaledObjects).Namespace(benchNS).Create(ctx, so, metav1.CreateOptions{})
	return err
}

// mgmt calls the broker's management API as guest.
func mgmt(ctx context.Context, method, path string, body, out any) error {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, stack.ManagementURL+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// brokerCPU returns the broker's CPU time so far, from the OS process the management API names
// (os_pid in /api/nodes): user + system time from /proc.
func brokerCPU(ctx context.Context) (time.Duration, error) {
	var nodes []struct {
		OSPid string `json:"os_pid"`
	}
	if err := mgmt(ctx, http.MethodGet, "/api/nodes", nil, &nodes); err != nil {
		return 0, err
	}
	if len(nodes) != 1 {
		return 0, fmt.Errorf("%d broker nodes, want 1", len(nodes))
	}
	b, err := os.ReadFile("/proc/" + nodes[0].OSPid + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces, inside parentheses).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// brokerReading is the broker's CPU time so far and when it was read.
type brokerReading struct {
	cpu time.Duration
	at  time.Time
}

func readBroker(ctx context.Context) (brokerReading, error) {
	cpu, err := brokerCPU(ctx)
	return brokerReading{cpu: cpu, at: time.Now()}, err
}

// used is the broker's CPU from r to later; net is the part of it beyond the broker's own
// background work at rest (fleet.brokerIdle), which it spends whoever its clients are: the
// CPU the clients' requests cost it.
func (r brokerReading) used(later brokerReading) (all, net time.Duration) {
	all = later.cpu - r.cpu
	background := time.Duration(fleet.brokerIdle * later.at.Sub(r.at).Seconds() * float64(time.Millisecond))
	return all, all - background
}

// brokerAtRest is the broker's CPU per second, in milliseconds, while nobody uses it: after
// one statistics interval for the work of setting up the fleet to end, over four more (5 s
// at least). The harness's broker collects statistics every 500 ms; with
// HEADROOM_BROKER_DEFAULT_STATS, RabbitMQ's own 5 s.
func brokerAtRest(ctx context.Context) (float64, error) {
	interval := 500 * time.Millisecond
	if envOn("HEADROOM_BROKER_DEFAULT_STATS") {
		interval = 5 * time.Second
	}
	time.Sleep(interval)
	r0, err := readBroker(ctx)
	if err != nil {
		return 0, err
	}
	time.Sleep(max(4*interval, 5*time.Second))
	r1, err := readBroker(ctx)
	if err != nil {
		return 0, err
	}
	all, _ := r0.used(r1)
	return float64(all.Microseconds()) / 1000 / r1.at.Sub(r0.at).Seconds(), nil
}

// brokerConnections is the number of AMQP connections the broker holds.
func brokerConnections(ctx context.Context) (int, error) {
	var o struct {
		ObjectTotals struct {
			Connections int `json:"connections"`
		} `json:"object_totals"`
	}
	err := mgmt(ctx, http.MethodGet, "/api/overview", nil, &o)
	return o.ObjectTotals.Connections, err
}

// scrapeMetrics returns the sample lines of a scaler replica's /metrics that start with
// prefix.
func scrapeMetrics(ctx context.Context, httpAddr, prefix string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// sampleValue is the value of one exposition sample line.
func sampleValue(line string) (float64, error) {
	fields := strings.Fields(line)
	v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
	if err != nil {
		return 0, fmt.Errorf("sample value in %q: %w", line, err)
	}
	return v, nil
}

// scalerBrokerRequests sums headroom_broker_requests_total over the scaler replicas.
func scalerBrokerRequests(ctx context.Context) (float64, error) {
	return sumScalers(ctx, "headroom_broker_requests_total")
}

// scalerBrokerRefreshes sums headroom_broker_refreshes_total over the scaler replicas.
func scalerBrokerRefreshes(ctx context.Context) (float64, error) {
	return sumScalers(ctx, "headroom_broker_refreshes_total")
}

// sumScalers sums the samples of one family over the scaler replicas.
func sumScalers(ctx context.Context, family string) (float64, error) {
	var total float64
	for _, s := range stack.Scalers {
		lines, err := scrapeMetrics(ctx, s.HTTP, family+"{")
		if err != nil {
			return 0, err
		}
		for _, line := range lines {
			v, err := sampleValue(line)
			if err != nil {
				return 0, err
			}
			total += v
		}
	}
	return total, nil
}

// poller is one ScaledObject's scaler as KEDA holds it, and the metric name KEDA asks for.
type poller struct {
	s      scalers.Scaler
	metric string
}

// round polls every scaler once with n concurrent pollers, as KEDA's polling loops would,
// and returns the wall time and each call's latency.
func round(ctx context.Context, ps []poller, n int) (time.Duration, []time.Duration, error) {
	return calls(ctx, len(ps), n, kedaPoll(ps))
}

// pollCall makes the i-th call of a round.
type pollCall func(ctx context.Context, i int) error

// kedaPoll polls the i-th scaler as KEDA's polling loop does.
func kedaPoll(ps []poller) pollCall {
	return func(ctx context.Context, i int) error {
		_, _, err := ps[i].s.GetMetricsAndActivity(ctx, ps[i].metric)
		return err
	}
}

// calls runs call(0) … call(count-1) on n concurrent goroutines, each taking the next index
// as it finishes one, and returns the wall time and each call's latency.
func calls(ctx context.Context, count, n int, call pollCall) (time.Duration, []time.Duration, error) {
	lat := make([]time.Duration, count)
	errs := make([]error, n)
	next := make(chan int, count)
	for i := range count {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				err := call(ctx, i)
				lat[i] = time.Since(t0)
				if err != nil && errs[w] == nil {
					errs[w] = fmt.Errorf("poll %d: %w", i, err)
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return wall, lat, err
		}
	}
	return wall, lat, nil
}

// concurrencies are the numbers of concurrent pollers each benchmark runs with: KEDA's
// (many ScaledObjects polled at once), and one, for what a single call costs when it does not
// wait for others.
var concurrencies = []int{pollers, 1}

// eachConcurrency runs poll as one sub-benchmark per entry of concurrencies.
func eachConcurrency(b *testing.B, poll func(b *testing.B, n int)) {
	for _, n := range concurrencies {
		b.Run(fmt.Sprintf("pollers=%d", n), func(b *testing.B) { poll(b, n) })
	}
}

// paces are the poll rates of the paced sub-benchmarks, in polls a second over the whole
// fleet: about what 1,000 ScaledObjects ask at KEDA's defaults (the operator polls each one
// every 30 s, and the HPA reads each one's metric every 15 s through KEDA's metrics server,
// which polls the scaler again: 100 polls a second), and ten times that.
var paces = []int{100, 1000}

// eachPace runs paced rounds of call as one sub-benchmark per entry of paces.
func eachPace(b *testing.B, count int, call pollCall, scalerSide bool) {
	for _, rate := range paces {
		b.Run(fmt.Sprintf("polls-per-s=%d", rate), func(b *testing.B) { runRounds(b, count, pollers, rate, call, scalerSide) })
	}
}

// paced starts call(0) … call(count-1) at rate calls a second, each on a goroutine of its
// own whether or not the calls before it have returned, as KEDA's loops (one per
// ScaledObject) do not wait for each other, and returns each call's latency. Unlike a
// round of calls, a call here does not queue behind others of the same client: its
// latency is what one poll costs at that rate, waits for a core included.
func paced(ctx context.Context, count, rate int, call pollCall) ([]time.Duration, error) {
	lat := make([]time.Duration, count)
	errs := make([]error, count)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range count {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			err := call(ctx, i)
			lat[i] = time.Since(t0)
			if err != nil {
				errs[i] = fmt.Errorf("poll %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return lat, err
		}
	}
	return lat, nil
}

// runRounds runs b.N rounds of call(0) … call(count-1) and reports per-call figures and the
// CPU costs per round with the broker's request costs. With rate 0 a round runs back to
// back on n concurrent pollers and its wall time is reported; otherwise it is paced at rate
// calls a second, lasts as long as the pace makes it (no wall time is reported) and n is
// only the warm-up's concurrency.
func runRounds(b *testing.B, count, n, rate int, call pollCall, scalerSide bool) {
	ctx := context.Background()
	// One warm-up round: connection setup and first reads are not what a steady poll costs.
	if _, _, err := calls(ctx, count, n, call); err != nil {
		b.Fatal(err)
	}
	round := func() (time.Duration, []time.Duration, error) { return calls(ctx, count, n, call) }
	if rate > 0 {
		round = func() (time.Duration, []time.Duration, error) {
			lat, err := paced(ctx, count, rate, call)
			return 0, lat, err
		}
	}
	measure(b, scalerSide, func() (int, time.Duration, []time.Duration, time.Duration) {
		var all []time.Duration
		var walls time.Duration
		cpu0 := selfCPU()
		var profiled <-chan error // the scaler's profile, under its own back-to-back load only
		if scalerSide && rate == 0 {
			profiled = profileScaler(b)
		}
		for i := 0; i < b.N; i++ {
			wall, lat, err := round()
			if err != nil {
				b.Fatal(err)
			}
			walls += wall
			all = append(all, lat...)
		}
		cpu := selfCPU() - cpu0
		if profiled != nil {
			if err := <-profiled; err != nil {
				b.Errorf("profile the scaler: %v", err)
			}
		}
		return b.N, walls, all, cpu
	})
}

// selfCPU is this process's CPU time so far (user + system): KEDA's code polling.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU reads the machine's busy and total CPU time, in clock ticks over all cores,
// from the first line of /proc/stat: user, nice, system, idle, iowait, irq, softirq and
// steal (guest time is already counted in user); idle and iowait are not busy.
func machineCPU() (busy, total uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q is not the cpu total", line)
	}
	for i, f := range fields[1:min(len(fields), 9)] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: field %d %q: %w", i+1, f, err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// scalerCPU sums process_cpu_seconds_total over the scaler replicas.
func scalerCPU(ctx context.Context) (time.Duration, error) {
	var total float64
	for _, s := range stack.Scalers {
		lines, err := scrapeMetrics(ctx, s.HTTP, "process_cpu_seconds_total ")
		if err != nil {
			return 0, err
		}
		if len(lines) != 1 {
			return 0, fmt.Errorf("scaler %s: %d process_cpu_seconds_total samples, want 1", s.HTTP, len(lines))
		}
		v, err := sampleValue(lines[0])
		if err != nil {
			return 0, err
		}
		total += v
	}
	return time.Duration(total * float64(time.Second)), nil
}

// measure runs load, which polls whole rounds and returns how many rounds ran while it
// held the timer, the wall time of the rounds it reports (0 for paced rounds), those
// rounds' call latencies and the CPU the polling client used, and reports them with the
// broker's CPU and connections and, for the scaler, its own CPU and its broker requests over
// the same time.
func measure(b *testing.B, scalerSide bool, load func() (rounds int, walls time.Duration, lat []time.Duration, clientCPU time.Duration)) {
	ctx := context.Background()
	broker0, err := readBroker(ctx)
	if err != nil {
		b.Fatal(err)
	}
	req0, _ := scalerBrokerRequests(ctx)
	ref0, _ := scalerBrokerRefreshes(ctx)
	scaler0, _ := scalerCPU(ctx)
	busy0, total0, machineErr := machineCPU()
	b.ResetTimer()
	start := time.Now()
	rounds, walls, all, client := load()
	elapsed := time.Since(start)
	b.StopTimer()
	busy1, total1, err := machineCPU()
	if machineErr == nil && err == nil && total1 > total0 {
		// How busy the whole machine was while the load ran: every process of the stack
		// (the API server, KEDA, the HPA controller, the broker, the scaler, the load tool).
		b.ReportMetric(100*float64(busy1-busy0)/float64(total1-total0), "machine-busy-%")
	}
	broker1, err := readBroker(ctx)
	if err != nil {
		b.Fatal(err)
	}
	brokerAll, brokerNet := broker0.used(broker1)
	conns, err := brokerConnections(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if len(all) == 0 {
		b.Fatal("no calls measured")
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	perRound := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(rounds) }
	if walls > 0 { // a paced load's rounds last as long as the pace makes them
		reported := len(all) / fleetSize
		b.ReportMetric(float64(walls.Microseconds())/1000/float64(reported), "ms/round")
	}
	b.ReportMetric(pct(0.50), "p50-ms/call")
	b.ReportMetric(pct(0.99), "p99-ms/call")
	b.ReportMetric(perRound(brokerAll), "broker-cpu-ms/round")
	b.ReportMetric(perRound(brokerNet), "broker-net-cpu-ms/round")
	b.ReportMetric(float64(brokerAll.Microseconds())/1000/broker1.at.Sub(broker0.at).Seconds(), "broker-cpu-ms/s")
	b.ReportMetric(fleet.brokerIdle, "broker-idle-cpu-ms/s")
	b.ReportMetric(float64(conns), "broker-conns")
	b.ReportMetric(perRound(client), "client-cpu-ms/round")
	if scalerSide {
		req1, _ := scalerBrokerRequests(ctx)
		b.ReportMetric((req1-req0)/elapsed.Seconds(), "broker-req/s")
		// What one refresh costs the broker: its CPU over the refreshes in the same time (the
		// scaler is the broker's only client here), with its background work at rest and
		// without it.
		if ref1, _ := scalerBrokerRefreshes(ctx); ref1 > ref0 {
			b.ReportMetric(float64(brokerAll.Microseconds())/1000/(ref1-ref0), "broker-cpu-ms/refresh")
			b.ReportMetric(float64(brokerNet.Microseconds())/1000/(ref1-ref0), "broker-net-cpu-ms/refresh")
			b.ReportMetric((req1-req0)/(ref1-ref0), "broker-req/refresh")
		}
		if scaler1, err := scalerCPU(ctx); err == nil {
			b.ReportMetric(perRound(scaler1-scaler0), "scaler-cpu-ms/round")
		}
	}
}

// BenchmarkKEDARabbitMQHTTP is KEDA's own RabbitMQ scaler over the management API: one
// request per ScaledObject per poll.
func BenchmarkKEDARabbitMQHTTP(b *testing.B) { benchKEDARabbitMQ(b, "http") }

// BenchmarkKEDARabbitMQAMQP is KEDA's own RabbitMQ scaler over AMQP: one connection per
// ScaledObject, a passive declare per poll.
func BenchmarkKEDARabbitMQAMQP(b *testing.B) { benchKEDARabbitMQ(b, "amqp") }

func benchKEDARabbitMQ(b *testing.B, protocol string) {
	setupFleet(b)
	host := strings.Replace(stack.ManagementURL, "http://", "http://guest:guest@", 1) + "/"
	if protocol == "amqp" {
		host = stack.AMQPURL
	}
	ps := make([]poller, fleetSize)
	for i := range ps {
		cfg := &scalersconfig.ScalerConfig{
			ScalableObjectName: queueName(i), ScalableObjectNamespace: benchNS, ScalableObjectType: "ScaledObject",
			TriggerType: "rabbitmq", TriggerIndex: 0, GlobalHTTPTimeout: 3 * time.Second,
			TriggerMetadata: map[string]string{"host": host, "protocol": protocol, "queueName": queueName(i), "mode": "QueueLength", "value": "5"},
		}
		s, err := scalers.NewRabbitMQScaler(cfg)
		if err != nil {
			b.Fatalf("KEDA NewRabbitMQScaler %d: %v", i, err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		specs := s.GetMetricSpecForScaling(context.Background())
		ps[i] = poller{s: s, metric: specs[0].External.Metric.Name}
	}
	eachConcurrency(b, func(b *testing.B, n int) { runRounds(b, len(ps), n, 0, kedaPoll(ps), false) })
	eachPace(b, len(ps), kedaPoll(ps), false)
}

// BenchmarkScalerServe polls `scaler serve` through KEDA's external-scaler client (what the
// operator runs): GetMetrics and IsActive per ScaledObject per poll, over one shared gRPC
// connection, answered from the scaler's snapshot.
func BenchmarkScalerServe(b *testing.B) {
	ps := externalPollers(b)
	eachConcurrency(b, func(b *testing.B, n int) { runRounds(b, len(ps), n, 0, kedaPoll(ps), true) })
	eachPace(b, len(ps), kedaPoll(ps), true)
}

// BenchmarkScalerServeGRPC polls the scaler replica's gRPC port with the client gRPC
// generates from KEDA's externalscaler.proto (KEDA's own package), without the rest of KEDA:
// n goroutines on one connection, GetMetrics for each of the 1,000 ScaledObjects per round,
// each request built once. It is the load with the least client cost per call, to tell the
// load tool's share of a round from the scaler's: ghz spends about as much CPU per call as
// the scaler answering it, on the same two cores.
func BenchmarkScalerServeGRPC(b *testing.B) {
	externalPollers(b)
	conn, err := grpc.NewClient(stack.Scalers[0].GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	client := externalscaler.NewExternalScalerClient(conn)
	reqs := make([]*externalscaler.GetMetricsRequest, fleetSize)
	for i := range reqs {
		reqs[i] = &externalscaler.GetMetricsRequest{
			ScaledObjectRef: &externalscaler.ScaledObjectRef{Name: queueName(i), Namespace: benchNS, ScalerMetadata: fleetMetadata(i)},
			MetricName:      fleetMetric,
		}
	}
	eachConcurrency(b, func(b *testing.B, n int) {
		runRounds(b, fleetSize, n, 0, func(ctx context.Context, i int) error {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			resp, err := client.GetMetrics(ctx, reqs[i])
			if err != nil {
				return err
			}
			if len(resp.MetricValues) != 1 || resp.MetricValues[0].MetricName != fleetMetric {
				return fmt.Errorf("%s: metric values %v, want one %s", queueName(i), resp.MetricValues, fleetMetric)
			}
			return nil
		}, true)
	})
}

// externalPollers is one KEDA external scaler per ScaledObject of the fleet, returned once
// the scaler answers for every one of them (it has planned them all).
func externalPollers(b *testing.B) []poller {
	setupFleet(b)
	ps := make([]poller, fleetSize)
	for i := range ps {
		s, err := scalers.NewExternalScaler(scalerConfig(benchNS, queueName(i), fleetMetadata(i)))
		if err != nil {
			b.Fatalf("KEDA NewExternalScaler %d: %v", i, err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		specs := s.GetMetricSpecForScaling(context.Background())
		if len(specs) != 1 {
			b.Fatalf("scaledobject %d: %d metric specs\n%s", i, len(specs), scalerLogs())
		}
		ps[i] = poller{s: s, metric: specs[0].External.Metric.Name}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, _, err := round(context.Background(), ps, pollers)
		if err == nil {
			return ps
		}
		if time.Now().After(deadline) {
			b.Fatalf("the scaler did not answer for all %d ScaledObjects: %v\n%s", fleetSize, err, scalerLogs())
		}
		time.Sleep(time.Second)
	}
}

// idlePassWait is how long BenchmarkScalerIdle waits past its window for a planning pass:
// three of the product's default refresh intervals (the planner passes at least once in
// two).
const idlePassWait = 15 * time.Second

// BenchmarkScalerIdle is what the scaler costs while nobody polls it, with the 1,000
// ScaledObjects listed and their queues refreshed: its CPU per second, its planning passes
// per second (each over every ScaledObject) and how long one takes, and what each of its
// refreshes costs the broker. Each b.N is one second, the window stretched to the next
// planning pass when it holds none.
func BenchmarkScalerIdle(b *testing.B) {
	externalPollers(b)
	ctx := context.Background()
	// passes reads the planner's pass-duration histogram: how many passes, how long in all.
	passes := func() (n, seconds float64) {
		lines, err := scrapeMetrics(ctx, stack.Scalers[0].HTTP, "headroom_plan_duration_seconds_")
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range lines {
			v, err := sampleValue(line)
			if err != nil {
				b.Fatal(err)
			}
			switch {
			case strings.HasPrefix(line, "headroom_plan_duration_seconds_count "):
				n = v
			case strings.HasPrefix(line, "headroom_plan_duration_seconds_sum "):
				seconds = v
			}
		}
		return n, seconds
	}
	cpu0, err := scalerCPU(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n0, s0 := passes()
	broker0, err := readBroker(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ref0, _ := scalerBrokerRefreshes(ctx)
	b.ResetTimer()
	start := time.Now()
	profiled := profileScaler(b)
	time.Sleep(time.Duration(b.N) * time.Second)
	// At the product's 5 s refresh a window of a second or two (the benchmark's first run
	// has b.N = 1) often holds no pass: stretch it to the next one, up to a bound, so that
	// every figure has a pass to stand on. The figures are per second of the window. Each
	// check scrapes the scaler's metrics, which costs it CPU inside the window: once a
	// second keeps that small against a pass every few seconds.
	for deadline := time.Now().Add(idlePassWait); ; time.Sleep(time.Second) {
		if n, _ := passes(); n > n0 || time.Now().After(deadline) {
			break
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-profiled; err != nil {
		b.Errorf("profile the scaler: %v", err)
	}
	cpu1, err := scalerCPU(ctx)
	if err != nil {
		b.Fatal(err)
	}
	broker1, err := readBroker(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if ref1, _ := scalerBrokerRefreshes(ctx); ref1 > ref0 {
		// The broker's CPU per refresh at rest (the scaler is its only client), with its
		// background work and without it.
		all, net := broker0.used(broker1)
		b.ReportMetric(float64(all.Microseconds())/1000/(ref1-ref0), "broker-cpu-ms/refresh")
		b.ReportMetric(float64(net.Microseconds())/1000/(ref1-ref0), "broker-net-cpu-ms/refresh")
		b.ReportMetric(fleet.brokerIdle, "broker-idle-cpu-ms/s")
		b.ReportMetric((ref1-ref0)/elapsed.Seconds(), "refreshes/s")
	}
	n1, s1 := passes()
	if n1 == n0 {
		b.Fatalf("no planning pass in %s (the planner passes at least once per two refresh intervals)", elapsed.Round(time.Millisecond))
	}
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/elapsed.Seconds(), "scaler-cpu-ms/s")
	b.ReportMetric((n1-n0)/elapsed.Seconds(), "passes/s")
	b.ReportMetric((s1-s0)*1000/(n1-n0), "ms/pass")
}

// BenchmarkScalerServeGhz polls the scaler replica's gRPC port directly with ghz, a gRPC
// load tool built from the module proxy at a pinned version: n concurrent workers on one
// connection, GetMetrics for the 1,000 ScaledObjects in turn, (b.N + 1) × 1,000 calls in one
// run. The first 1,000 warm the connection and are not reported; each later 1,000 is a
// round, whose wall time runs from the end of the previous round's last call to the end of
// its own. ghz runs without its per-call templates (the requests are fixed): with them, it
// spent more CPU building each call than the scaler spent answering it. It runs on one
// core's worth of Go scheduler (--cpus 1): on two, its idle threads spinning for work took
// about a third more CPU from the machine the scaler shares with it.
func BenchmarkScalerServeGhz(b *testing.B) {
	externalPollers(b)
	ghz := ghzBinary(b)
	dir := b.TempDir()
	reqs := make([]map[string]any, fleetSize)
	for i := range reqs {
		reqs[i] = map[string]any{
			"scaledObjectRef": map[string]any{"name": queueName(i), "namespace": benchNS, "scalerMetadata": fleetMetadata(i)},
			"metricName":      fleetMetric,
		}
	}
	data, err := json.Marshal(reqs)
	if err != nil {
		b.Fatal(err)
	}
	dataFile := filepath.Join(dir, "requests.json")
	if err := os.WriteFile(dataFile, data, 0o600); err != nil {
		b.Fatal(err)
	}
	eachConcurrency(b, func(b *testing.B, n int) {
		before, err := serverGetMetricsBuckets()
		if err != nil {
			b.Fatal(err)
		}
		measure(b, true, func() (int, time.Duration, []time.Duration, time.Duration) {
			rounds := b.N + 1
			cmd := exec.Command(ghz, "--insecure", "--proto", filepath.Join("..", "proto", "externalscaler.proto"),
				"--call", "externalscaler.ExternalScaler.GetMetrics", "--data-file", dataFile,
				"--concurrency", strconv.Itoa(n), "--connections", "1", "--total", strconv.Itoa(rounds*fleetSize),
				"--timeout", "10s", "--disable-template-functions", "--disable-template-data", "--cpus", "1",
				"--format", "json", stack.Scalers[0].GRPC)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			profiled := profileScaler(b)
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("ghz: %v\n%s", err, stderr.String())
			}
			if err := <-profiled; err != nil {
				b.Errorf("profile the scaler: %v", err)
			}
			walls, lat, err := ghzRounds(out, rounds)
			if err != nil {
				b.Fatal(err)
			}
			return rounds, walls, lat, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		})
		after, err := serverGetMetricsBuckets()
		if err != nil {
			b.Fatal(err)
		}
		// The scaler's own view of the same calls: from the request's arrival in the handler
		// chain to its answer, without the network, the client or the wait for a CPU before.
		b.ReportMetric(bucketQuantile(before, after, 0.50)*1000, "server-p50-ms")
		b.ReportMetric(bucketQuantile(before, after, 0.99)*1000, "server-p99-ms")
	})
}

// serverGetMetricsBuckets reads the cumulative bucket counts of the scaler's GetMetrics
// latency histogram (successful calls), by upper bound in seconds.
func serverGetMetricsBuckets() (map[float64]float64, error) {
	lines, err := scrapeMetrics(context.Background(), stack.Scalers[0].HTTP, "headroom_grpc_request_duration_seconds_bucket{")
	if err != nil {
		return nil, err
	}
	out := map[float64]float64{}
	for _, line := range lines {
		if !strings.Contains(line, `method="GetMetrics"`) || !strings.Contains(line, `code="OK"`) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.Index(line[i+4:], `"`)
		le, err := strconv.ParseFloat(line[i+4:i+4+j], 64)
		if err != nil {
			return nil, fmt.Errorf("bucket bound in %q: %w", line, err)
		}
		if out[le], err = sampleValue(line); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// bucketQuantile is the upper bound of the first bucket holding quantile q of the calls
// counted between two readings of a cumulative histogram (an upper estimate: the true
// quantile lies in that bucket).
func bucketQuantile(before, after map[float64]float64, q float64) float64 {
	les := make([]float64, 0, len(after))
	for le := range after {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return 0
	}
	total := after[les[len(les)-1]] - before[les[len(les)-1]]
	for _, le := range les {
		if after[le]-before[le] >= q*total {
			return le
		}
	}
	return les[len(les)-1]
}

// ghzReport is the part of ghz's JSON report read here.
type ghzReport struct {
	StatusCodeDist map[string]int `json:"statusCodeDistribution"`
	ErrorDist      map[string]int `json:"errorDistribution"`
	Details        []struct {
		Timestamp time.Time     `json:"timestamp"` // when the call ended
		Latency   time.Duration `json:"latency"`
		Status    string        `json:"status"`
	} `json:"details"`
}

// ghzRounds splits a ghz run of rounds × fleetSize calls into rounds by the order in which
// the calls ended, drops the first (warm-up) round, and returns the others' wall time and
// latencies. Any call that did not succeed is an error.
func ghzRounds(out []byte, rounds int) (time.Duration, []time.Duration, error) {
	var r ghzReport
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, nil, fmt.Errorf("ghz report: %w", err)
	}
	if n := len(r.Details); n != rounds*fleetSize {
		return 0, nil, fmt.Errorf("ghz reported %d calls, want %d", n, rounds*fleetSize)
	}
	if len(r.ErrorDist) > 0 || r.StatusCodeDist["OK"] != rounds*fleetSize {
		// Each distinct message (they carry the queue and the reading's age) is a key: name
		// one, not thousands.
		var first string
		for msg := range r.ErrorDist {
			if first == "" || msg < first {
				first = msg
			}
		}
		return 0, nil, fmt.Errorf("ghz: calls failed: status %v, %d distinct errors, the first: %s", r.StatusCodeDist, len(r.ErrorDist), first)
	}
	d := r.Details
	sort.Slice(d, func(i, j int) bool { return d[i].Timestamp.Before(d[j].Timestamp) })
	walls := d[len(d)-1].Timestamp.Sub(d[fleetSize-1].Timestamp)
	lat := make([]time.Duration, 0, len(d)-fleetSize)
	for _, c := range d[fleetSize:] {
		lat = append(lat, c.Latency)
	}
	return walls, lat, nil
}

// ghzBinary builds ghz into the cache (once) through the main module's labbuild and returns
// its path.
func ghzBinary(b *testing.B) string {
	cmd := exec.Command("go", "run", "./internal/cmd/labbuild", "-print", "ghz")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("build ghz: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// profileScaler, when HEADROOM_BENCH_PROFILE names a file, takes a CPU profile of the scaler
// replica for the first 5 s of the load (the demo stack serves its profiles) and writes it
// next to that name, one file per benchmark (profilePath). The channel yields the outcome
// once done, nil at once when no profile is asked for.
func profileScaler(b *testing.B) <-chan error {
	done := make(chan error, 1)
	path := profilePath(os.Getenv("HEADROOM_BENCH_PROFILE"), b.Name())
	if path == "" {
		done <- nil
		return done
	}
	go func() {
		resp, err := http.Get("http://" + stack.Scalers[0].HTTP + "/debug/pprof/profile?seconds=5")
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			done <- fmt.Errorf("%s: %s", resp.Request.URL, resp.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			b.Logf("scaler CPU profile: %s", path)
		}
		done <- err
	}()
	return done
}

// profilePath is where the profile of benchmark name goes when HEADROOM_BENCH_PROFILE is
// base: the benchmark's name (sub-benchmark separators as "_") before base's extension, so
// that the sub-benchmarks of one run each keep their own; "" when base is.
func profilePath(base, name string) string {
	if base == "" {
		return ""
	}
	ext := filepath.Ext(base)
	return strings.TrimSuffix(base, ext) + "." + strings.ReplaceAll(name, "/", "_") + ext
}
