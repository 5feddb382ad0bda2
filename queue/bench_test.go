package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	"github.com/headroom-autoscaler/headroom/queue"
)

const benchQueues = 1000

var benchSetup struct {
	once  sync.Once
	names []string
	err   error
}

// benchBroker is the shared broker with benchQueues queues in vhost "bench".
func benchBroker(b *testing.B) (*lab.RabbitMQ, []string) {
	r := labtest.SharedRabbitMQ(b)
	benchSetup.once.Do(func() {
		ctx := context.Background()
		for i := 0; i < benchQueues; i++ {
			benchSetup.names = append(benchSetup.names, fmt.Sprintf("work-%04d", i))
		}
		if benchSetup.err = r.Admin().AddVHost(ctx, "bench"); benchSetup.err != nil {
			return
		}
		benchSetup.err = r.Admin().DeclareQueues(ctx, "bench", benchSetup.names...)
	})
	if benchSetup.err != nil {
		b.Fatal(benchSetup.err)
	}
	return r, benchSetup.names
}

// BenchmarkRefresh1000 is the cost of one refresh cycle that serves 1,000 watched queues on
// one broker: this package's bulk list (paged /api/queues, then 1,000 reads from the cache),
// AMQP passive declares, and the request pattern of KEDA's built-in RabbitMQ scaler (one
// GET /api/queues/<vhost>/<name> per queue per poll).
func BenchmarkRefresh1000(b *testing.B) {
	r, names := benchBroker(b)
	withMetrics := modes[0].config(r)
	withMetrics.MetricsURLs = []string{r.PrometheusURL()}
	variants := []struct {
		name       string
		cfg        queue.BrokerConfig
		depthsOnly bool
	}{
		{"reader-management", modes[0].config(r), false},
		{"reader-amqp", modes[1].config(r), false},
		{"reader-management-depths-only", modes[0].config(r), true},
		{"reader-metrics-depths-only", withMetrics, true},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			var count recordingTransport
			rd, err := queue.NewReader([]queue.BrokerConfig{v.cfg}, queue.Options{WrapTransport: count.wrap})
			if err != nil {
				b.Fatal(err)
			}
			defer rd.Close()
			sels := make([]queue.Selector, len(names))
			for i, n := range names {
				sels[i] = queue.Selector{Broker: "rmq", VHost: "bench", Queue: n, DepthsOnly: v.depthsOnly}
				rd.Watch(sels[i])
			}
			ctx := context.Background()
			// Warm the connection, and wait for every queue's first statistics (the metrics
			// endpoint lists a queue once it has emitted them).
			err = lab.WaitFor(ctx, "every queue read", 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
				if err := rd.RefreshOnce(ctx, "rmq"); err != nil {
					return err
				}
				for _, s := range sels {
					if _, err := rd.Snapshot(ctx, s); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			before, _ := rd.BrokerStats("rmq")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := rd.RefreshOnce(ctx, "rmq"); err != nil {
					b.Fatal(err)
				}
				for _, s := range sels {
					if _, err := rd.Snapshot(ctx, s); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			after, _ := rd.BrokerStats("rmq")
			b.ReportMetric(float64(after.Requests-before.Requests)/float64(b.N), "requests/refresh")
		})
	}
	b.Run("keda-per-queue-http", func(b *testing.B) {
		client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		defer client.CloseIdleConnections()
		ctx := context.Background()
		requests := 0
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, n := range names {
				if _, err := kedaStyleGet(ctx, client, r.ManagementURL(), "bench", n); err != nil {
					b.Fatal(err)
				}
				requests++
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(requests)/float64(b.N), "requests/refresh")
	})
}

// kedaStyleGet reads one queue the way KEDA's RabbitMQ scaler does in HTTP mode.
func kedaStyleGet(ctx context.Context, c *http.Client, base, vhost, name string) (int64, error) {
	u := base + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var q struct {
		Messages        int64 `json:"messages"`
		MessagesUnacked int64 `json:"messages_unacknowledged"`
		MessageStats    struct {
			PublishDetails struct {
				Rate float64 `json:"rate"`
			} `json:"publish_details"`
		} `json:"message_stats"`
	}
	return q.Messages, json.NewDecoder(resp.Body).Decode(&q)
}

// BenchmarkSnapshotCached is what a caller pays per Snapshot between refreshes (no network):
// an exact queue, and a pattern summing all 1,000 queues of the vhost.
func BenchmarkSnapshotCached(b *testing.B) {
	r, names := benchBroker(b)
	rd, err := queue.NewReader([]queue.BrokerConfig{modes[0].config(r)}, queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	for _, sel := range []queue.Selector{
		{Broker: "rmq", VHost: "bench", Queue: names[len(names)-1]},
		{Broker: "rmq", VHost: "bench", Pattern: "^work-", Op: queue.OpSum},
	} {
		name := "exact"
		if sel.Pattern != "" {
			name = "pattern-1000"
		}
		b.Run(name, func(b *testing.B) {
			rd.Watch(sel)
			if err := rd.RefreshOnce(context.Background(), "rmq"); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := rd.Snapshot(ctx, sel); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkBrokerCPU1000 is what the broker spends, in CPU, on one refresh that serves 1,000
// queues, against one round of KEDA's built-in scaler over the same queues: the reader's
// listing with statistics and its stats-free one (Selector.DepthsOnly), the stats-free query
// paged and unpaged, and KEDA's one request per queue. The broker's CPU is read from /proc, for the
// process the management API names, so its background work while the benchmark runs is
// included.
func BenchmarkBrokerCPU1000(b *testing.B) {
	r, names := benchBroker(b)
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	ctx := context.Background()
	list := func(query string) func() error {
		return func() error {
			_, err := managementGet(ctx, client, r.ManagementURL()+"/api/queues/bench?"+query)
			return err
		}
	}
	const depths = "disable_stats=true&enable_queue_totals=true&columns=name,vhost,messages_ready,messages_unacknowledged"
	reader := func(depthsOnly bool) *queue.Reader {
		rd, err := queue.NewReader([]queue.BrokerConfig{modes[0].config(r)}, queue.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = rd.Close() })
		rd.Watch(queue.Selector{Broker: "rmq", VHost: "bench", Pattern: "^work-", DepthsOnly: depthsOnly})
		return rd
	}
	withStats, depthsOnly := reader(false), reader(true)
	withMetrics := modes[0].config(r)
	withMetrics.MetricsURLs = []string{r.PrometheusURL()}
	fromMetrics, err := queue.NewReader([]queue.BrokerConfig{withMetrics}, queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fromMetrics.Close() })
	fromMetrics.Watch(queue.Selector{Broker: "rmq", VHost: "bench", Pattern: "^work-", DepthsOnly: true})
	variants := []struct {
		name string
		op   func() error
	}{
		{"reader-listing", func() error { return withStats.RefreshOnce(ctx, "rmq") }},
		{"reader-depths-only", func() error { return depthsOnly.RefreshOnce(ctx, "rmq") }},
		{"reader-depths-from-metrics", func() error { return fromMetrics.RefreshOnce(ctx, "rmq") }},
		{"stats-free-paged", func() error {
			if err := list(depths + "&pagination=true&page=1&page_size=500")(); err != nil {
				return err
			}
			return list(depths + "&pagination=true&page=2&page_size=500")()
		}},
		{"stats-free-unpaged", list(depths)},
		{"keda-per-queue-http", func() error {
			for _, n := range names {
				if _, err := kedaStyleGet(ctx, client, r.ManagementURL(), "bench", n); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			if err := v.op(); err != nil { // warm
				b.Fatal(err)
			}
			cpu0, err := brokerCPU(ctx, client, r.ManagementURL())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := v.op(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu1, err := brokerCPU(ctx, client, r.ManagementURL())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(b.N), "broker-cpu-ms/op")
		})
	}
}

// managementGet reads one management-API URL as guest and returns the body.
func managementGet(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return body, err
}

// brokerCPU is the broker process's CPU time so far (user + system, from /proc), for the
// process the management API names in /api/nodes.
func brokerCPU(ctx context.Context, c *http.Client, base string) (time.Duration, error) {
	body, err := managementGet(ctx, c, base+"/api/nodes")
	if err != nil {
		return 0, err
	}
	var nodes []struct {
		OSPid string `json:"os_pid"`
	}
	if err := json.Unmarshal(body, &nodes); err != nil {
		return 0, err
	}
	if len(nodes) != 1 {
		return 0, fmt.Errorf("%d broker nodes, want 1", len(nodes))
	}
	stat, err := os.ReadFile("/proc/" + nodes[0].OSPid + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which may hold spaces, inside parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: %d fields", nodes[0].OSPid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%s/stat: %w", nodes[0].OSPid, err)
	}
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}
