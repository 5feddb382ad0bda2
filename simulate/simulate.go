package simulate

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/headroom-autoscaler/headroom/capacity"
)

// model is a compiled scenario: everything shared by the policies' runs.
type model struct {
	sc            *Scenario
	arr           *arrivals
	cum           []int64 // cum[t]: messages arrived in seconds < t
	demand        []int32 // SPEC demand per tick
	nodes         []nodeState
	worker        workerSpec
	consumers     int
	startLatency  int64
	grace         int64 // terminationGracePeriodSeconds
	horizon       int64
	base          time.Time
	maxReplicas   int32
	boundReplicas int32
	every         int64 // timeline row every this many seconds
}

// arrivedBy is the number of messages that arrived in seconds ≤ t.
func (m *model) arrivedBy(t int64) int64 {
	t = min(t+1, int64(len(m.cum)-1))
	if t < 0 {
		return 0
	}
	return m.cum[t]
}

// defaultGrace is Kubernetes' default terminationGracePeriodSeconds.
const defaultGrace = 30

// demandWindow is the shortest trailing window over which the SPEC demand's arrival rate is
// measured; the window is the mean service time when that is longer, so that the demand is
// the number of messages that would be in service (Little's law) rather than the noise of a
// minute's arrivals.
const demandWindow = 60

// maxTimelineRows bounds a timeline; longer runs sample every few seconds.
const maxTimelineRows = 20000

func compile(sc *Scenario, trace *Trace) (*model, error) {
	arr, err := sc.compileArrivals(trace)
	if err != nil {
		return nil, err
	}
	m := &model{
		sc: sc, arr: arr, consumers: sc.consumers(), maxReplicas: sc.maxReplicas(),
		startLatency: int64(sc.Workload.StartLatency.Seconds()),
		grace:        defaultGrace,
		base:         arr.start,
	}
	if g := sc.Workload.TerminationGracePeriod; g != nil {
		m.grace = int64(math.Ceil(g.Seconds()))
	}
	if m.base.IsZero() {
		m.base = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	drain := ticks(sc.Drain.Duration, 3600)
	if sc.Drain.Duration == 0 {
		drain = 3600
	}
	m.horizon = int64(len(arr.counts)) + drain
	m.every = max(1, (m.horizon+maxTimelineRows-1)/maxTimelineRows)
	m.cum = make([]int64, len(arr.counts)+1)
	for t, c := range arr.counts {
		m.cum[t+1] = m.cum[t] + c
	}
	w := sc.Workload
	m.worker = workerSpec{
		req:  capacity.Footprint{MilliCPU: w.Requests.CPU.milli, Memory: w.Requests.Memory.value},
		idle: w.Usage.Idle.resources(), busy: w.Usage.Busy.resources(),
	}
	for _, g := range sc.Cluster.Nodes {
		for i := range max(g.Count, 1) {
			name := g.Name
			if g.Count > 1 {
				name = fmt.Sprintf("%s-%d", g.Name, i)
			}
			alloc := g.Allocatable.resources()
			if alloc.Pods == 0 {
				alloc.Pods = 110 // the kubelet's default maxPods
			}
			m.nodes = append(m.nodes, nodeState{
				name: name, labels: g.Labels, allocatable: alloc,
				tenantReq: g.Tenants.Requests.resources(), tenantUse: g.Tenants.Usage.resources(),
			})
		}
	}
	m.boundReplicas = int32(min(int64(fitByRequests(m.nodes, &m.worker)), int64(m.maxReplicas)))
	// SPEC demand: d(t) = min(max, ⌈arrival rate × mean service time / consumers⌉).
	m.demand = make([]int32, m.horizon)
	window := max(demandWindow, int64(math.Round(arr.meanSvc)))
	for t := range m.horizon {
		win := min(t+1, window)
		rate := float64(m.arrivedBy(t)-m.arrivedBy(t-win)) / float64(win)
		d := math.Ceil(rate*arr.meanSvc/float64(m.consumers) - 1e-9)
		m.demand[t] = int32(min(d, float64(m.maxReplicas)))
	}
	return m, nil
}

// Options are the knobs of Run beyond the scenario.
type Options struct {
	// Trace replaces the scenario's arrivals with this file; TraceFormat is its format
	// ("" detects it).
	Trace       string
	TraceFormat string
	// Progress, when set, is called now and then with the policy running and the fraction of
	// the whole run done.
	Progress func(policy string, done float64)
}

// Report is the outcome of a run: one Result per policy, in run order, and the timelines
// behind them (for WriteOutputs).
type Report struct {
	Scenario string   `json:"scenario"`
	Policies []Result `json:"policies"`

	model     *model
	timelines [][]sample
}

// Run plays the scenario's arrivals through every policy it lists and scores them. It is
// deterministic: the same scenario and trace give the same report. It fails if a model
// invariant (Little's law) does not hold.
func Run(ctx context.Context, sc *Scenario, opt Options) (*Report, error) {
	var trace *Trace
	if opt.Trace != "" || sc.Arrivals.Trace != "" {
		var err error
		if trace, err = sc.readTrace(opt.Trace, opt.TraceFormat); err != nil {
			return nil, err
		}
	}
	if sc.Service.Kind == "sizes" && opt.Trace == "" && trace == nil {
		return nil, fmt.Errorf("%s: service kind sizes needs an events trace", sc.file)
	}
	m, err := compile(sc, trace)
	if err != nil {
		return nil, err
	}
	rep := &Report{Scenario: sc.Name, model: m}
	policies := sc.runList()
	for i, name := range policies {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s := newSim(m, name)
		s.ctl = m.newController(s, name)
		s.start(m.initialReplicas(name))
		var progress func(int64)
		if opt.Progress != nil {
			progress = func(t int64) {
				opt.Progress(name, (float64(i)+float64(t)/float64(m.horizon))/float64(len(policies)))
			}
		}
		if err := s.run(ctx, progress); err != nil {
			return nil, err
		}
		rep.Policies = append(rep.Policies, s.met.result(name))
		rep.timelines = append(rep.timelines, s.met.timeline)
	}
	return rep, nil
}
