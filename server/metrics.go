package server

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/scaler"
)

// MetricNames lists every metric family the server exports. The names are an API (dashboards
// and alerts use them): renaming one breaks a test.
var MetricNames = []string{
	"headroom_desired_replicas",
	"headroom_current_replicas",
	"headroom_ready_replicas",
	"headroom_pending_replicas",
	"headroom_need_replicas",
	"headroom_fit_replicas",
	"headroom_share_replicas",
	"headroom_busy_workers",
	"headroom_idle_workers",
	"headroom_limit",
	"headroom_hpa_warnings",
	"headroom_queue_messages",
	"headroom_snapshot_age_seconds",
	"headroom_broker_requests_total",
	"headroom_broker_refreshes_total",
	"headroom_broker_errors_total",
	"headroom_broker_partial_reads_total",
	"headroom_grpc_request_duration_seconds",
	"headroom_plan_duration_seconds",
	"headroom_node_free",
	"headroom_decisions_total",
	"headroom_limit_changes_total",
	"headroom_scale_down_held_total",
	"headroom_deletion_cost_patches_total",
	"headroom_caches_synced",
	"headroom_build_info",
}

// metrics holds the metrics the server updates as it goes; the rest are read at scrape time
// by stateCollector.
type metrics struct {
	grpcDuration       *prometheus.HistogramVec
	planDuration       prometheus.Histogram
	decisions          *prometheus.CounterVec
	limitChanges       *prometheus.CounterVec
	scaleDownHeld      *prometheus.CounterVec
	deletionCostPatchs *prometheus.CounterVec
}

var soLabels = []string{"namespace", "scaledobject"}

func newMetrics(s *Server, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		grpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "headroom_grpc_request_duration_seconds",
			Help:    "Time to serve a KEDA gRPC call (streams: until the stream ends), by method and status code.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"method", "code"}),
		planDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headroom_plan_duration_seconds",
			Help:    "Time of one planner pass over every ScaledObject (one runs after each broker refresh and cluster change).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_decisions_total",
			Help: "Decisions computed by the planner, by limiting factor.",
		}, []string{"namespace", "scaledobject", "limit"}),
		limitChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_limit_changes_total",
			Help: "Times the limiting factor of a ScaledObject's decision changed.",
		}, soLabels),
		scaleDownHeld: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_scale_down_held_total",
			Help: "Decisions whose scale-down stopped at the number of busy workers.",
		}, soLabels),
		deletionCostPatchs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headroom_deletion_cost_patches_total",
			Help: "Pod deletion-cost annotations patched, by namespace.",
		}, []string{"namespace"}),
	}
	if reg == nil {
		return m, nil
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "headroom_build_info",
		Help:        "Always 1; labels give the scaler's version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": s.opts.Version, "goversion": runtime.Version()},
	})
	build.Set(1)
	for _, c := range []prometheus.Collector{m.grpcDuration, m.planDuration, m.decisions, m.limitChanges, m.scaleDownHeld, m.deletionCostPatchs, build, &stateCollector{s: s}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// StreamWorkers is how many parked goroutines wait for gRPC calls: up to this many calls in
// flight at once (the benchmarks poll with 32) each find one. A parked worker costs a few
// kilobytes.
const StreamWorkers = 64

// WindowSize is the fixed HTTP/2 flow-control window, per stream and per connection, that
// the gRPC server grants. KEDA's requests are a few hundred bytes: no window is ever the
// limit, so the server does not measure the link to size its windows.
const WindowSize = 1 << 20

// GRPCOptions are the options the scaler's gRPC server runs with (add credentials for TLS):
//   - the interceptors that record every call's duration;
//   - calls on StreamWorkers parked goroutines that keep their grown stacks, instead of a
//     new goroutine per call whose stack is copied as it grows (an eighth of the server's
//     CPU at 32 calls in flight); more calls than workers at once get a goroutine each;
//   - fixed windows of WindowSize. With gRPC's default dynamic windows the server
//     estimates the bandwidth-delay product by sending a PING each time data arrives while
//     none is outstanding: with one call at a time, a ping and its acknowledgement for
//     every call, each an extra write and read on the connection and a wake-up of its
//     reader, for messages that never come near a window;
//   - requestCodec: a request seen before is not decoded again.
func (s *Server) GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.ChainUnaryInterceptor(s.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(s.StreamInterceptor()),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.StaticStreamWindowSize(WindowSize),
		grpc.StaticConnWindowSize(WindowSize),
	}
}

// UnaryInterceptor records the duration of every unary call.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		s.metrics.grpcDuration.WithLabelValues(methodName(info.FullMethod), status.Code(err).String()).Observe(time.Since(start).Seconds())
		return resp, err
	}
}

// StreamInterceptor records the duration of every stream.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		s.metrics.grpcDuration.WithLabelValues(methodName(info.FullMethod), status.Code(err).String()).Observe(time.Since(start).Seconds())
		return err
	}
}

// methodName keeps the method of "/package.Service/Method".
func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// stateCollector exports, at scrape time, state owned by the planner, the queue reader and
// the cluster caches. It never calls the broker or the API server.
type stateCollector struct{ s *Server }

var (
	descDesired  = soDesc("headroom_desired_replicas", "Replicas the scaler answers for the ScaledObject (the decision).")
	descCurrent  = soDesc("headroom_current_replicas", "Spec replicas of the scale target.")
	descReady    = soDesc("headroom_ready_replicas", "Ready pods of the scale target.")
	descPending  = soDesc("headroom_pending_replicas", "Pending-unschedulable pods of the scale target.")
	descNeed     = soDesc("headroom_need_replicas", "Workers the queue needs, before limits.")
	descFit      = soDesc("headroom_fit_replicas", "More workers of the target's footprint that fit in the cluster.")
	descShare    = soDesc("headroom_share_replicas", "More workers this ScaledObject may add: its share of the free room.")
	descBusy     = soDesc("headroom_busy_workers", "Pods of the scale target whose consumers hold unacknowledged messages (absent when they cannot be told from idle ones).")
	descIdle     = soDesc("headroom_idle_workers", "Running pods of the scale target holding no message (absent when they cannot be told from busy ones).")
	descHPA      = soDesc("headroom_hpa_warnings", "Settings of the ScaledObject that keep the HPA from running the answer as it is (behavior, metricType, other triggers); GET /decisions names them.")
	descLimit    = prometheus.NewDesc("headroom_limit", "1 for the factor that limits the decision, 0 for the others.", []string{"namespace", "scaledobject", "limit"}, nil)
	descMessages = prometheus.NewDesc("headroom_queue_messages", "Messages in the ScaledObject's queue(s), by state.", []string{"namespace", "scaledobject", "state"}, nil)
	descAge      = prometheus.NewDesc("headroom_snapshot_age_seconds", "Age of the broker's last successful read.", []string{"broker"}, nil)
	descRequests = prometheus.NewDesc("headroom_broker_requests_total", "Requests sent to the broker (HTTP requests, or AMQP dials, channel opens and declares).", []string{"broker"}, nil)
	descRefresh  = prometheus.NewDesc("headroom_broker_refreshes_total", "Refreshes of the broker (the queue listing, page by page, and the consumer detail when asked for), failed or not.", []string{"broker"}, nil)
	descErrors   = prometheus.NewDesc("headroom_broker_errors_total", "Broker reads that failed.", []string{"broker"}, nil)
	descPartial  = prometheus.NewDesc("headroom_broker_partial_reads_total", "Broker reads that could not read every node's metrics endpoint (--broker-metrics); those nodes' queues were unknown.", []string{"broker"}, nil)
	descNodeFree = prometheus.NewDesc("headroom_node_free", "Free room on a node (cpu in cores, memory in bytes, pods).", []string{"node", "resource"}, nil)
	descSynced   = prometheus.NewDesc("headroom_caches_synced", "1 when the cluster caches are synced.", nil, nil)
)

func soDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, soLabels, nil)
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDesired, descCurrent, descReady, descPending, descNeed, descFit, descShare, descBusy, descIdle, descHPA, descLimit, descMessages, descAge, descRequests, descRefresh, descErrors, descNodeFree, descSynced} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := s.now()
	pl := s.planner.current()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// One series per ScaledObject: with several triggers pointing at this scaler, the one
	// with the highest decision (the HPA takes the maximum over its metrics).
	best := map[[2]string]*entry{}
	var order [][2]string
	failed := map[[2]string]bool{}
	var failedOrder [][2]string
	var prev [2]string
	for i, k := range pl.sortedKeys() {
		e := pl.entries[k]
		id := [2]string{k.namespace, k.name}
		if i == 0 || id != prev {
			// Sorted keys: a ScaledObject's triggers come one after another.
			gauge(descHPA, float64(len(e.so.Warnings)), k.namespace, k.name)
		}
		prev = id
		if e.err != nil {
			if !failed[id] {
				failed[id] = true
				failedOrder = append(failedOrder, id)
			}
			continue
		}
		if b, ok := best[id]; !ok {
			order = append(order, id)
			best[id] = e
		} else if e.dec.Replicas > b.dec.Replicas {
			best[id] = e
		}
	}
	for _, id := range order {
		e := best[id]
		ns, so := id[0], id[1]
		d := e.dec
		gauge(descDesired, float64(d.Replicas), ns, so)
		gauge(descCurrent, float64(e.workload.Current), ns, so)
		gauge(descReady, float64(e.workload.Ready), ns, so)
		gauge(descPending, float64(e.workload.Pending), ns, so)
		gauge(descNeed, float64(d.Need), ns, so)
		gauge(descFit, float64(e.workload.Fit), ns, so)
		gauge(descShare, float64(e.share), ns, so)
		if e.busy.known {
			gauge(descBusy, float64(e.busy.busy), ns, so)
			gauge(descIdle, float64(e.busy.idle), ns, so)
		}
		for _, l := range scaler.Limits {
			v := 0.0
			if l == d.Limit {
				v = 1
			}
			gauge(descLimit, v, ns, so, string(l))
		}
		gauge(descMessages, float64(e.snap.Ready), ns, so, "ready")
		gauge(descMessages, float64(e.snap.Unacked), ns, so, "unacked")
	}
	// ScaledObjects with no decision at all show limit="error".
	for _, id := range failedOrder {
		if _, ok := best[id]; ok {
			continue
		}
		for _, l := range scaler.Limits {
			v := 0.0
			if l == scaler.LimitError {
				v = 1
			}
			gauge(descLimit, v, id[0], id[1], string(l))
		}
	}
	for _, b := range s.brokers {
		st, err := s.opts.Brokers.BrokerStats(b)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(st.Requests), b)
		ch <- prometheus.MustNewConstMetric(descRefresh, prometheus.CounterValue, float64(st.Refreshes), b)
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(st.Failures), b)
		ch <- prometheus.MustNewConstMetric(descPartial, prometheus.CounterValue, float64(st.Partial), b)
		if ok := s.lastGoodRead(b, st); !ok.IsZero() {
			gauge(descAge, now.Sub(ok).Seconds(), b)
		}
	}
	if nl, ok := s.opts.Cluster.(NodeLister); ok {
		for _, n := range nl.NodesFree() {
			gauge(descNodeFree, float64(n.MilliCPU)/1000, n.Node, "cpu")
			gauge(descNodeFree, float64(n.Memory), n.Node, "memory")
			gauge(descNodeFree, float64(n.Pods), n.Node, "pods")
		}
	}
	synced := 1.0
	if sy, ok := s.opts.Cluster.(Syncer); ok && !sy.Synced() {
		synced = 0
	}
	gauge(descSynced, synced)
}

// lastGoodRead returns when broker b was last read successfully, as far as the server has
// seen (Stats reports the last read, failed or not).
func (s *Server) lastGoodRead(b string, st queue.Stats) time.Time {
	s.goodMu.Lock()
	defer s.goodMu.Unlock()
	if s.good == nil {
		s.good = map[string]time.Time{}
	}
	if st.LastError == nil && st.LastRefresh.After(s.good[b]) {
		s.good[b] = st.LastRefresh
	}
	return s.good[b]
}

// DeletionCostPatched counts pod deletion-cost patches made in a namespace (for the
// busy-aware scale-down).
func (s *Server) DeletionCostPatched(namespace string, n int) {
	s.metrics.deletionCostPatchs.WithLabelValues(namespace).Add(float64(n))
}
