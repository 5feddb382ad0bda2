package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/scaler"
)

// MetricName is the name of the one metric the server reports to KEDA.
const MetricName = "headroom-desired-replicas"

// DefaultFirstReadWait bounds how long a call for a trigger the planner has not seen yet waits
// for the first read of its queue.
const DefaultFirstReadWait = 5 * time.Second

// EventRecorder reports a change of a ScaledObject's limiting factor (as a Kubernetes Event).
// It must not block.
type EventRecorder interface {
	LimitChanged(so ScaledObject, from, to scaler.Limit, explanation string)
}

// Options configures a Server. Queue, Brokers and Cluster are required.
type Options struct {
	Queue   QueueReader
	Brokers BrokerMonitor
	Cluster ClusterReader
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger     // nil: discard
	Events     EventRecorder    // nil: no events
	Version    string           // reported by headroom_build_info
	Now        func() time.Time // nil: time.Now
	// Refresh is the broker refresh interval; the planner runs after every broker refresh and
	// every change in the cluster caches, and at least every 2 × Refresh when neither comes.
	// Default queue.DefaultRefresh.
	Refresh time.Duration
	// MaxSnapshotAge: older queue readings are refused with Unavailable. Default 3 × Refresh.
	MaxSnapshotAge time.Duration
	// FirstReadWait: see DefaultFirstReadWait.
	FirstReadWait time.Duration
	// Pods, when set, receives the pod deletion-cost patches of the busy-aware scale-down
	// (KubePods); nil sets no costs (busy workers still hold the decision). PatchQPS and
	// PatchBurst rate-limit the patches (defaults DefaultPatchQPS, DefaultPatchBurst).
	Pods       PodPatcher
	PatchQPS   float64
	PatchBurst int
}

// Server implements KEDA's ExternalScaler service from the queue and cluster caches.
type Server struct {
	pb.UnimplementedExternalScalerServer

	opts    Options
	log     *slog.Logger
	now     func() time.Time
	brokers []string
	configs *configCache
	planner *planner
	metrics *metrics
	costs   *costPatcher // nil: no deletion costs

	goodMu sync.Mutex
	good   map[string]time.Time // broker → last successful read seen

	startOnce, closeOnce sync.Once
	closing              chan struct{}
	cancel               context.CancelFunc
	wg                   sync.WaitGroup
}

// New checks opts and builds a Server. Start begins planning.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Queue == nil:
		return nil, errors.New("server: no queue reader")
	case opts.Brokers == nil:
		return nil, errors.New("server: no broker monitor")
	case opts.Cluster == nil:
		return nil, errors.New("server: no cluster reader")
	case opts.Refresh < 0:
		return nil, fmt.Errorf("server: refresh %v is negative", opts.Refresh)
	case opts.PatchQPS < 0 || opts.PatchBurst < 0:
		return nil, fmt.Errorf("server: patch rate %v/s burst %d: must not be negative", opts.PatchQPS, opts.PatchBurst)
	case opts.MaxSnapshotAge < 0:
		return nil, fmt.Errorf("server: max snapshot age %v is negative", opts.MaxSnapshotAge)
	}
	if opts.Refresh == 0 {
		opts.Refresh = queue.DefaultRefresh
	}
	if opts.MaxSnapshotAge == 0 {
		opts.MaxSnapshotAge = 3 * opts.Refresh
	}
	if opts.FirstReadWait == 0 {
		opts.FirstReadWait = DefaultFirstReadWait
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		log:     log,
		now:     opts.Now,
		brokers: opts.Brokers.Brokers(),
		closing: make(chan struct{}),
	}
	s.configs = newConfigCache(s.brokers)
	s.planner = newPlanner(s)
	m, err := newMetrics(s, opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if opts.Pods != nil {
		s.costs = newCostPatcher(opts.Pods, opts.PatchQPS, opts.PatchBurst, log, s.DeletionCostPatched)
	}
	return s, nil
}

// Start runs the planner until ctx ends or Close.
func (s *Server) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.cancel = context.WithCancel(ctx)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.planner.run(ctx, &s.wg)
		}()
		if s.costs != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.costs.run(ctx)
			}()
		}
	})
}

// Close stops the planner and ends open streams. It does not close the readers it was given.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.startOnce.Do(func() {})
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
	})
}

// PlanNow runs one planner pass synchronously (for tests and benchmarks).
func (s *Server) PlanNow() { s.planner.pass(s.now()) }

// Register registers the ExternalScaler service on g.
func (s *Server) Register(g grpc.ServiceRegistrar) { pb.RegisterExternalScalerServer(g, s) }

// Ready reports why the server cannot answer yet: cluster caches not synced, or a broker
// whose last read failed or is older than the snapshot bound.
func (s *Server) Ready() error {
	if sy, ok := s.opts.Cluster.(Syncer); ok && !sy.Synced() {
		return ErrNotSynced
	}
	now := s.now()
	for _, b := range s.brokers {
		st, err := s.opts.Brokers.BrokerStats(b)
		if err != nil {
			return err
		}
		if st.Refreshes == 0 || st.Selectors == 0 {
			continue // nobody asks about this broker (yet, or any more): it is not read
		}
		if st.LastError != nil {
			return fmt.Errorf("broker %q: %w", b, st.LastError)
		}
		if age := now.Sub(st.LastRefresh); age > s.opts.MaxSnapshotAge {
			return fmt.Errorf("broker %q: last read %s ago (bound %s)", b, age.Round(time.Millisecond), s.opts.MaxSnapshotAge)
		}
	}
	return nil
}

// decide returns the decision for ref, from the planner's latest plan, or computed on demand
// (without a share of the room) for a trigger the planner has not seen.
func (s *Server) decide(ctx context.Context, ref *pb.ScaledObjectRef) (*entry, error) {
	if ref == nil || ref.Name == "" || ref.Namespace == "" {
		return nil, status.Error(codes.InvalidArgument, "scaledObjectRef: name and namespace are required")
	}
	cfg, canon, err := s.configs.get(ref.ScalerMetadata)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "scaledobject %s/%s: %v", ref.Namespace, ref.Name, err)
	}
	now := s.now()
	pl := s.planner.current()
	if e, ok := pl.entries[entryKey{ref.Namespace, ref.Name, canon}]; ok {
		if e.err != nil {
			return nil, e.err
		}
		// The plan may be older than the reading bound if the broker stopped answering.
		if err := s.fresh(e.snap, now, cfg.Selector); err != nil {
			return nil, err
		}
		return e, nil
	}
	return s.onDemand(ctx, ref, cfg, now)
}

func (s *Server) onDemand(ctx context.Context, ref *pb.ScaledObjectRef, cfg *Config, now time.Time) (*entry, error) {
	so, err := s.opts.Cluster.ScaledObject(ref.Namespace, ref.Name)
	switch {
	case errors.Is(err, ErrNotFound) && cfg.TargetKind != "":
		so = ScaledObject{Namespace: ref.Namespace, Name: ref.Name}
	case err != nil:
		return nil, clusterStatus(fmt.Sprintf("scaledobject %s/%s", ref.Namespace, ref.Name), err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.FirstReadWait)
	defer cancel()
	e := &entry{so: so, cfg: cfg}
	in, pol, err := s.gather(ctx, e, nil, now)
	if err != nil {
		return nil, err
	}
	e.share = e.workload.Fit
	e.dec = scaler.Decide(pol, in, now)
	return e, nil
}

// GetMetricSpec returns the one metric, with target 1: the HPA then computes
// ceil(value / 1) = the decision. It only checks the metadata.
func (s *Server) GetMetricSpec(_ context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	if ref == nil {
		return nil, status.Error(codes.InvalidArgument, "scaledObjectRef is required")
	}
	if _, _, err := s.configs.get(ref.ScalerMetadata); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "scaledobject %s/%s: %v", ref.Namespace, ref.Name, err)
	}
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{{
		MetricName:      MetricName,
		TargetSize:      int64(scaler.MetricTarget),
		TargetSizeFloat: scaler.MetricTarget,
	}}}, nil
}

// GetMetrics returns the decision as the metric value.
func (s *Server) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "request is required")
	}
	e, err := s.decide(ctx, req.ScaledObjectRef)
	if err != nil {
		return nil, err
	}
	v := scaler.MetricValue(e.dec)
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{
		MetricName:       MetricName,
		MetricValue:      int64(math.Round(v)),
		MetricValueFloat: v,
	}}}, nil
}

// IsActive reports whether the decision is above zero.
func (s *Server) IsActive(ctx context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	e, err := s.decide(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &pb.IsActiveResponse{Result: e.dec.Replicas > 0}, nil
}

// StreamIsActive sends the current activity at once, then again every time it changes (the
// planner runs after every broker refresh), until the client goes away or the server
// closes. While no decision can be made (the broker is unreachable, say) it sends nothing:
// KEDA keeps its last value and its polling loop reports the error.
func (s *Server) StreamIsActive(ref *pb.ScaledObjectRef, stream grpc.ServerStreamingServer[pb.IsActiveResponse]) error {
	ctx := stream.Context()
	if ref == nil || ref.Name == "" || ref.Namespace == "" {
		return status.Error(codes.InvalidArgument, "scaledObjectRef: name and namespace are required")
	}
	if _, _, err := s.configs.get(ref.ScalerMetadata); err != nil {
		return status.Errorf(codes.InvalidArgument, "scaledobject %s/%s: %v", ref.Namespace, ref.Name, err)
	}
	sent, last := false, false
	for {
		pl := s.planner.current()
		e, err := s.decide(ctx, ref)
		switch {
		case err == nil:
			active := e.dec.Replicas > 0
			if !sent || active != last {
				if err := stream.Send(&pb.IsActiveResponse{Result: active}); err != nil {
					return err
				}
				sent, last = true, active
			}
		case status.Code(err) == codes.InvalidArgument || status.Code(err) == codes.NotFound:
			return err
		}
		select {
		case <-pl.next:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.closing:
			return status.Error(codes.Unavailable, "server shutting down")
		}
	}
}
