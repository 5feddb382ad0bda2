package server_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

// benchServer plans n ScaledObjects, one queue each, over a fixed snapshot, and returns the
// server with one GetMetrics request per ScaledObject.
func benchServer(b *testing.B, n int) (*server.Server, []*pb.GetMetricsRequest) {
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
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(srv.UnaryInterceptor()))
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
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
