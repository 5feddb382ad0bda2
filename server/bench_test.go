package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// benchServer plans n ScaledObjects, one queue each, over a fixed snapshot, and returns the
// server with one GetMetrics request per ScaledObject.
func benchServer(b testing.TB, n int) (*server.Server, []*pb.GetMetricsRequest) {
	b.Helper()
	q := (&fixedQueue{snap: queue.Snapshot{Ready: 50, InFlightVisible: true, Queues: 1}, live: true}).at(time.Now())
	c := newFakeCluster()
	refs := make([]*pb.GetMetricsRequest, n)
	for i := range n {
		md := map[string]string{"scalerAddress": "headroom.keda:9090", "broker": "main", "queue": fmt.Sprintf("jobs-%04d", i), "messagesPerReplica": "2"}
		name := fmt.Sprintf("worker-%04d", i)
		c.add("bench", name, server.Workload{Current: 10, Ready: 10, Fit: 100}, md)
		refs[i] = &pb.GetMetricsRequest{ScaledObjectRef: ref("bench", name, md)}
	}
	srv, err := server.New(server.Options{Queue: q, Brokers: q, Cluster: c, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	srv.PlanNow()
	// The planner passes in the background as it does when serving, so that the plan stays
	// within the reading bound however long the benchmark runs.
	srv.Start(b.Context())
	b.Cleanup(srv.Close)
	return srv, refs
}

// BenchmarkGetMetrics measures a KEDA poll: GetMetrics over real gRPC on loopback, for 1,000
// ScaledObjects answered from the planner's plan. The queue side is a fixed snapshot: the
// call path never touches the broker (the planner reads it in the background), so a real
// broker would only add noise to the numbers.
func BenchmarkGetMetrics(b *testing.B) {
	const n = 1000
	srv, refs := benchServer(b, n)
	addr := serveBench(b, srv, srv.GRPCOptions())
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	ctx := context.Background()
	if _, err := client.GetMetrics(ctx, refs[0]); err != nil {
		b.Fatal(err)
	}

	report := func(b *testing.B, lat []time.Duration) {
		slices.Sort(lat)
		if len(lat) == 0 {
			return
		}
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}

	b.Run("sequential", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			start := time.Now()
			if _, err := client.GetMetrics(ctx, refs[i%n]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
		}
		report(b, lat)
	})

	// A round: every ScaledObject polled once by 32 concurrent pollers, as KEDA does.
	b.Run("round-of-1000-by-32-pollers", func(b *testing.B) {
		var mu sync.Mutex
		var lat []time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			var wg sync.WaitGroup
			next := make(chan int, n)
			for i := range n {
				next <- i
			}
			close(next)
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := make([]time.Duration, 0, n/32+1)
					for i := range next {
						start := time.Now()
						if _, err := client.GetMetrics(ctx, refs[i]); err != nil {
							b.Error(err)
							return
						}
						local = append(local, time.Since(start))
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
		report(b, lat)
	})
}

// BenchmarkPlan measures one planner pass over 1,000 ScaledObjects (metadata cached, shares
// computed), which runs after every broker refresh.
func BenchmarkPlan(b *testing.B) {
	const n = 1000
	q := (&fixedQueue{snap: queue.Snapshot{Ready: 50, InFlightVisible: true, Queues: 1}, live: true}).at(time.Now())
	c := newFakeCluster()
	for i := range n {
		md := map[string]string{"queue": fmt.Sprintf("jobs-%04d", i)}
		c.add("bench", fmt.Sprintf("worker-%04d", i), server.Workload{Current: 10, Ready: 10, Fit: 100}, md)
	}
	srv, err := server.New(server.Options{Queue: q, Brokers: q, Cluster: c, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		srv.PlanNow()
	}
}

// BenchmarkGetMetricsHandler is the server's own share of a call: the handler alone, without
// gRPC (metadata canonical form, config cache, plan lookup, freshness check, response).
func BenchmarkGetMetricsHandler(b *testing.B) {
	const n = 1000
	srv, refs := benchServer(b, n)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := srv.GetMetrics(ctx, refs[i%n]); err != nil {
			b.Fatal(err)
		}
	}
}

// serveBench serves srv's ExternalScaler on a loopback port with opts until b ends and
// returns the address.
func serveBench(b testing.TB, srv *server.Server, opts []grpc.ServerOption) string {
	b.Helper()
	g := grpc.NewServer(opts...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(g.Stop)
	return lis.Addr().String()
}

// BenchmarkServeGhz is what answering KEDA's polls costs the server alone: the server of
// BenchmarkGetMetrics (1,000 ScaledObjects over a fixed snapshot) polled by ghz, a real gRPC
// load tool in a process of its own, as KEDA's operator is, on one connection. One op is a
// round of 1,000 calls; the run is (b.N + 1) rounds in one ghz invocation, the first of them
// warm-up. The figure to read is server-cpu-µs/call (this process's CPU over the run, per
// call): the wall times and latencies also carry ghz's own CPU, on the same two cores. Two
// sets of options: the server's (GRPCOptions) and gRPC's defaults with only the
// interceptors, which is what the server ran with before GRPCOptions.
func BenchmarkServeGhz(b *testing.B) {
	ghz, err := lab.Binary("ghz")
	if err != nil {
		b.Skip(err)
	}
	const n = 1000
	srv, refs := benchServer(b, n)
	reqs, err := json.Marshal(refsJSON(refs))
	if err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(b.TempDir(), "requests.json")
	if err := os.WriteFile(data, reqs, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, o := range []struct {
		name string
		opts []grpc.ServerOption
	}{
		{"server", srv.GRPCOptions()},
		{"grpc-defaults", []grpc.ServerOption{grpc.ChainUnaryInterceptor(srv.UnaryInterceptor())}},
	} {
		addr := serveBench(b, srv, o.opts)
		for _, c := range []int{32, 1} {
			b.Run(fmt.Sprintf("options=%s/pollers=%d", o.name, c), func(b *testing.B) {
				rounds := b.N + 1
				cmd := exec.Command(ghz, "--insecure", "--proto", filepath.Join("..", "proto", "externalscaler.proto"),
					"--call", "externalscaler.ExternalScaler.GetMetrics", "--data-file", data,
					"--concurrency", strconv.Itoa(c), "--connections", "1", "--total", strconv.Itoa(rounds*n),
					"--timeout", "10s", "--disable-template-functions", "--disable-template-data", "--cpus", "1",
					"--format", "json", addr)
				cpu0 := processCPU()
				b.ResetTimer()
				out, err := cmd.Output()
				b.StopTimer()
				cpu := processCPU() - cpu0
				if err != nil {
					b.Fatalf("ghz: %v", err)
				}
				wall, lat, err := ghzSteady(out, n, rounds)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(cpu.Microseconds())/float64(rounds*n), "server-cpu-µs/call")
				b.ReportMetric(float64(wall.Microseconds())/1000/float64(rounds-1), "ms/round")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				ghzCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				b.ReportMetric(float64(ghzCPU.Microseconds())/float64(rounds*n), "ghz-cpu-µs/call")
			})
		}
	}
}

// refsJSON is the requests in the JSON form ghz reads (protobuf JSON names).
func refsJSON(refs []*pb.GetMetricsRequest) []map[string]any {
	out := make([]map[string]any, len(refs))
	for i, r := range refs {
		out[i] = map[string]any{
			"scaledObjectRef": map[string]any{"name": r.ScaledObjectRef.Name, "namespace": r.ScaledObjectRef.Namespace,
				"scalerMetadata": r.ScaledObjectRef.ScalerMetadata},
			"metricName": server.MetricName,
		}
	}
	return out
}

// ghzSteady reads a ghz JSON report of rounds × n calls: every call must have succeeded.
// It returns the wall time from the end of the n-th call to the end of the last (the rounds
// after the first) and those calls' latencies, sorted.
func ghzSteady(out []byte, n, rounds int) (time.Duration, []time.Duration, error) {
	var r struct {
		StatusCodeDist map[string]int `json:"statusCodeDistribution"`
		Details        []struct {
			Timestamp time.Time     `json:"timestamp"`
			Latency   time.Duration `json:"latency"`
		} `json:"details"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, nil, fmt.Errorf("ghz report: %w", err)
	}
	if len(r.Details) != rounds*n || r.StatusCodeDist["OK"] != rounds*n {
		return 0, nil, fmt.Errorf("ghz: %d calls reported, status %v; want %d OK", len(r.Details), r.StatusCodeDist, rounds*n)
	}
	d := r.Details
	sort.Slice(d, func(i, j int) bool { return d[i].Timestamp.Before(d[j].Timestamp) })
	lat := make([]time.Duration, 0, len(d)-n)
	for _, c := range d[n:] {
		lat = append(lat, c.Latency)
	}
	slices.Sort(lat)
	return d[len(d)-1].Timestamp.Sub(d[n-1].Timestamp), lat, nil
}

// processCPU is this process's CPU time so far (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
