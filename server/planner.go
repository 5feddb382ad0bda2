package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/scaler"
)

// entryKey names one trigger of one ScaledObject: KEDA calls once per trigger, with that
// trigger's metadata.
type entryKey struct {
	namespace, name string
	canon           string // canonical metadata
}

// entry is one trigger's latest decision, or why there is none.
type entry struct {
	so  ScaledObject
	cfg *Config
	// err is a gRPC status error when there is no decision.
	err error
	// firstRead marks an err that only says the queue has not been read yet (a new trigger):
	// not an observation worth counting or reporting.
	firstRead bool
	// unread: the queue has no depths yet, because it was not read yet or because the broker
	// lists it without statistics (just declared, or the broker restarted). Both pass within
	// a refresh or two; until then the trigger reserves its part of the room.
	unread bool

	dec      scaler.Decision
	snap     queue.Snapshot
	workload Workload
	share    int32 // Fit after sharing the room (the workload's own Fit when it claimed none)
	busy     busyView
}

// plan is one planner pass: the decisions for every trigger pointing at this scaler.
type plan struct {
	at      time.Time
	entries map[entryKey]*entry
	// clusterErr is set when the ScaledObjects could not be listed.
	clusterErr error
	// next is closed when the next plan is published.
	next chan struct{}
}

// stepStarted is when the target's latest step began, as far as its pods tell: the creation
// time of its youngest pod that is not Ready (pods being deleted or finished aside). Zero when
// every pod is Ready or the pods are not listed.
func stepStarted(pods []WorkerPod) time.Time {
	var t time.Time
	for _, p := range pods {
		if !p.Ready && !p.Terminating && !p.Finished && p.Created.After(t) {
			t = p.Created
		}
	}
	return t
}

// observation is what the planner remembers of a trigger between passes: only what it
// cannot read from the cluster or the broker.
type observation struct {
	// emptySince: when the queue was first seen empty in the current run of empty readings.
	emptySince time.Time
	// lastCurrent and lastScaleUp: the spec replicas at the previous pass, and when they were
	// last seen rising (until the step's pods exist, the only sign of the step).
	lastCurrent int32
	lastScaleUp time.Time
	limit       scaler.Limit
	seen        bool
	// logged is the decision (or error) last written to the debug log: a line is written
	// when it changes, not on every pass.
	logged loggedDecision
	// The trigger's counters, looked up once rather than hashed by labels on every pass.
	changes, held prometheus.Counter
	decisions     map[scaler.Limit]prometheus.Counter
}

// loggedDecision is what makes a decision worth a new debug line: the decision (its wait
// counted in whole seconds, as Explain prints it) or the error.
type loggedDecision struct {
	dec scaler.Decision
	err string
}

// shareUnits is the number of units the free room is divided into for scaler.Share (see
// shareRoom).
const shareUnits = 1 << 20

// planner computes decisions for every ScaledObject that points at this scaler, after every
// broker refresh and cluster change.
type planner struct {
	s    *Server
	wake chan struct{}

	mu   sync.Mutex // guards obs; held by pass only
	obs  map[entryKey]*observation
	cur  *plan
	lock sync.RWMutex // guards cur
}

func newPlanner(s *Server) *planner {
	p := &planner{s: s, wake: make(chan struct{}, 1), obs: map[entryKey]*observation{}}
	p.cur = &plan{entries: map[entryKey]*entry{}, clusterErr: ErrNotSynced, next: make(chan struct{})}
	return p
}

func (p *planner) current() *plan {
	p.lock.RLock()
	defer p.lock.RUnlock()
	return p.cur
}

func (p *planner) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run plans until ctx ends. Watchers forward broker refreshes and cluster changes as pokes.
func (p *planner) run(ctx context.Context, wg *sync.WaitGroup) {
	for _, b := range p.s.brokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-p.s.opts.Queue.Refreshed(b):
					p.poke()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if v, ok := p.s.opts.Cluster.(Versioned); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(ClusterPoll)
			defer t.Stop()
			last := v.Version()
			for {
				select {
				case <-t.C:
					if now := v.Version(); now != last {
						last = now
						p.poke()
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	// Each broker refresh pokes a pass, and so does a change in the cluster caches. The timer
	// is the fallback for when neither comes (a broker that stopped answering, idle times
	// that move on): a pass at least every two Refresh intervals, restarted after each pass.
	// One interval fired just before each refresh, whose period is the interval plus the
	// read's own time, and doubled the passes.
	fallback := 2 * p.s.opts.Refresh
	t := time.NewTimer(fallback)
	defer t.Stop()
	for {
		p.pass(p.s.now())
		t.Reset(fallback)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
	}
}

// noWait is an already-cancelled context: Snapshot with it never waits.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// pass computes one plan and publishes it.
func (p *planner) pass(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	defer func() { p.s.metrics.planDuration.Observe(time.Since(start).Seconds()) }()
	next := &plan{at: now, entries: map[entryKey]*entry{}, next: make(chan struct{})}
	sos, err := p.s.opts.Cluster.ScaledObjects()
	if err != nil {
		next.clusterErr = err
		p.publish(next)
		return
	}
	type item struct {
		key  entryKey
		e    *entry
		in   scaler.Input
		pol  scaler.Policy
		want int64 // more pods wanted, with unlimited room
	}
	// waiting: triggers whose queue has no depths yet (entry.unread). They claim room at
	// their first reading; until then each reserves its weighted part of the room, so that the
	// others do not take the room it is about to ask for and, a pass later, overfill the nodes
	// together with it, or keep it.
	var items, waiting []*item
	for _, so := range sos {
		for _, md := range so.Triggers {
			cfg, canon, err := p.s.configs.get(md)
			k := entryKey{so.Namespace, so.Name, canon}
			if _, dup := next.entries[k]; dup {
				continue // two identical triggers: one answer
			}
			e := &entry{so: so, cfg: cfg}
			next.entries[k] = e
			if err != nil {
				e.err = status.Error(codes.InvalidArgument, err.Error())
				continue
			}
			it := &item{key: k, e: e}
			it.in, it.pol, e.err = p.s.gather(noWait, e, p.obs[k], now)
			switch {
			case e.err == nil:
				items = append(items, it)
			case e.unread:
				waiting = append(waiting, it)
			}
		}
	}

	// Share the free room among the triggers that want more than they run.
	claims := make([]scaler.Claim, 0, len(items))
	var claimants []*item
	for _, it := range items {
		it.e.share = it.e.workload.Fit
		unbounded := it.in
		unbounded.Fit = math.MaxInt32
		it.want = claimWant(scaler.Decide(it.pol, unbounded, now))
		if it.want <= 0 || it.e.workload.Fit <= 0 {
			continue
		}
		claimants = append(claimants, it)
		claims = append(claims, scaler.Claim{
			Key:    it.key.namespace + "/" + it.key.name + "/" + it.key.canon,
			Weight: it.e.cfg.Weight,
			Held:   heldUnits(it.in.Current-it.in.Pending, it.e.workload.Fit),
			Want:   claimUnits(it.want, it.e.workload.Fit),
		})
	}
	if len(claimants) > 0 {
		for _, it := range waiting {
			w := it.e.workload
			claims = append(claims, scaler.Claim{
				Key:    it.key.namespace + "/" + it.key.name + "/" + it.key.canon,
				Weight: it.e.cfg.Weight,
				Held:   heldUnits(w.Current-w.Pending, w.Fit),
				Want:   shareUnits,
			})
		}
	}
	served := make([]Workload, len(items))
	for i, it := range items {
		served[i] = it.e.workload
	}
	room := unplacedRoom(served)
	alloc := scaler.Share(int64(room*shareUnits), claims)
	for _, a := range alloc[len(claimants):] {
		room -= float64(a) / shareUnits
	}
	wants := make([]int64, len(claimants))
	fits := make([]int32, len(claimants))
	for i, it := range claimants {
		wants[i], fits[i] = it.want, it.e.workload.Fit
	}
	n := len(claimants)
	for i, pods := range sharePods(claims[:n], alloc[:n], wants, fits, room) {
		claimants[i].e.share = pods
	}
	for _, it := range items {
		it.in.Fit = it.e.share
		it.e.dec = scaler.Decide(it.pol, it.in, now)
	}
	p.observe(next, now)
	p.publish(next)
	if p.s.costs != nil {
		p.s.costs.set(planCosts(items, func(it *item) (string, Workload, busyView) {
			return it.key.namespace, it.e.workload, it.e.busy
		}))
	}
}

// planCosts lists the deletion costs every served target's pods should have. Costs are kept
// fresh on every pass for every target, not only when a scale-down is decided: the HPA and
// the ReplicaSet controller act later, on their own clocks, and the pods they remove must
// already carry the costs by then. Only changed costs are patched, so a steady busy set
// costs nothing. A target named by several triggers is counted once.
func planCosts[T any](items []T, of func(T) (string, Workload, busyView)) []podCost {
	var out []podCost
	seen := map[costKey]bool{}
	for _, it := range items {
		ns, w, v := of(it)
		if v.skipped {
			continue // no scale-down pending: the pods keep the costs they have
		}
		for _, pc := range wantedCosts(ns, w, v) {
			if seen[pc.key] {
				continue
			}
			seen[pc.key] = true
			out = append(out, pc)
		}
	}
	return out
}

// unplacedRoom is the fraction of the free room left once the served targets' pods that
// exist on paper but are not bound to a node yet are counted: a target whose last answer was
// applied a moment ago has spec replicas (or pods) the scheduler has not placed, which no
// node's requests include, so Fit still counts their room as free. Without this, two targets
// answered a pass apart both get the same room, and together overfill it. Each unplaced pod
// of a target that fits f more takes 1/f of the room (all of it when f is 0: its pods are
// about to take whatever is left, or to turn Pending-unschedulable). Pending-unschedulable
// pods take no room: they do not fit.
func unplacedRoom(ws []Workload) float64 {
	room := 1.0
	for _, w := range ws {
		if w.Pods == nil {
			continue
		}
		bound := int32(0)
		for _, p := range w.Pods {
			if p.Node != "" {
				bound++
			}
		}
		if u := w.Current - bound - w.Pending; u > 0 {
			if w.Fit <= 0 {
				return 0
			}
			room -= float64(u) / float64(w.Fit)
		}
	}
	return max(room, 0)
}

// claimWant is how many more pods a target claims room for, from its decision with
// unlimited room: what the queue needs beyond what it runs (up to its max), also while its
// step waits for the last pods to be Ready. The step limits how fast a target takes its
// part, not how large the part is: a target between two steps that claimed nothing would
// see the others take its part of the free room, and keep it. A target that is scaling
// down, holding, or has Pending-unschedulable pods claims nothing.
func claimWant(d scaler.Decision) int64 {
	switch d.Limit {
	case scaler.LimitQueue, scaler.LimitStep, scaler.LimitMax, scaler.LimitCapacity:
		return max(int64(min(d.Need, d.Max)), int64(d.Replicas)) - int64(d.Current)
	}
	return int64(d.Replicas) - int64(d.Current)
}

// claimUnits converts "want more pods, of which fit would fit alone" into shared units: the
// fraction of the cluster's free room the claim takes, in units of 1/shareUnits. Targets
// with different footprints thus compete for the same fractions of the room: a target whose
// footprint is twice as large fits half as many pods, so each of its pods costs twice the
// units.
func claimUnits(want int64, fit int32) int64 {
	u := (want*shareUnits + int64(fit) - 1) / int64(fit)
	return min(u, shareUnits)
}

// heldUnits is the room, in shared units, that a claim's pods already take: pods that are
// placed or about to be (Pending-unschedulable ones take none), each costing 1/fit of the
// free room like the pods it asks for. Share counts it towards the claim's part, so the
// split does not depend on which target happened to be answered first, and takes none of it
// back: a target above its part gets no more until the others catch up, and none of its
// workers is stopped for it.
func heldUnits(pods, fit int32) int64 {
	if pods <= 0 || fit <= 0 {
		return 0
	}
	return int64(pods) * shareUnits / int64(fit)
}

// sharePods converts the units Share allocated back into whole pods. Rounding every claim
// down strands room: one free pod split 3:1 is 0.75 and 0.25 of a pod, both rounding to 0,
// and nobody would ever get it. So the room that rounding left unused is handed out again,
// one whole pod at a time, to the claims that still want more, in Share's tie order: the
// largest fractional part first, then the larger weight, then the smaller key. A pod of a
// claim costs 1/fit of the room (fit: how many of its pods the room holds alone), and one is
// handed out only while its whole cost is left, so the pods given never take more than
// room (the fraction of the free room these claims share: 1 less what waiting triggers
// reserve).
func sharePods(claims []scaler.Claim, alloc, want []int64, fit []int32, room float64) []int32 {
	const eps = 1e-9 // room is a sum of fractions: allow for float rounding, never a pod
	pods := make([]int32, len(claims))
	frac := make([]int64, len(claims))
	left := room
	for i := range claims {
		limit := min(want[i], int64(fit[i]))
		n := alloc[i] * int64(fit[i]) / shareUnits
		if alloc[i] >= claims[i].Want {
			n = limit
		}
		n = min(n, limit)
		pods[i] = int32(n)
		frac[i] = alloc[i]*int64(fit[i]) - n*shareUnits
		left -= float64(n) / float64(fit[i])
	}
	order := make([]int, len(claims))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		x, y := order[a], order[b]
		if frac[x] != frac[y] {
			return frac[x] > frac[y]
		}
		if claims[x].Weight != claims[y].Weight {
			return claims[x].Weight > claims[y].Weight
		}
		return claims[x].Key < claims[y].Key
	})
	for given := true; given; {
		given = false
		for _, i := range order {
			if int64(pods[i]) >= min(want[i], int64(fit[i])) {
				continue
			}
			if c := 1 / float64(fit[i]); c <= left+eps {
				pods[i]++
				left -= c
				given = true
			}
		}
	}
	return pods
}

// observe updates what the planner remembers, counts decisions, and reports limit changes.
func (p *planner) observe(pl *plan, now time.Time) {
	s := p.s
	seen := map[entryKey]bool{}
	for k, e := range pl.entries {
		seen[k] = true
		o := p.obs[k]
		if o == nil {
			o = &observation{}
			p.obs[k] = o
		}
		if e.firstRead {
			continue
		}
		if o.changes == nil {
			// Counters start at 0 for every served ScaledObject, so rates and alerts see them.
			o.changes = s.metrics.limitChanges.WithLabelValues(k.namespace, k.name)
			o.held = s.metrics.scaleDownHeld.WithLabelValues(k.namespace, k.name)
			o.decisions = map[scaler.Limit]prometheus.Counter{}
			s.metrics.deletionCostPatchs.WithLabelValues(k.namespace)
		}

		limit, explain := scaler.LimitError, ""
		if e.err != nil {
			// No decision (KEDA gets the error and applies its fallback): counted as "error".
			explain = status.Convert(e.err).Message()
			if l := (loggedDecision{err: explain}); l != o.logged {
				o.logged = l
				s.log.Debug("no decision", "namespace", k.namespace, "scaledobject", k.name, "err", explain)
			}
		} else {
			d := e.dec
			limit = d.Limit
			if e.snap.Ready+e.snap.Unacked == 0 {
				if o.emptySince.IsZero() {
					o.emptySince = now
				}
			} else {
				o.emptySince = time.Time{}
			}
			if o.seen && e.workload.Current > o.lastCurrent {
				o.lastScaleUp = now
			}
			o.lastCurrent = e.workload.Current
			if d.Limit == scaler.LimitBusy {
				o.held.Inc()
			}
			l := loggedDecision{dec: d}
			l.dec.Waited = l.dec.Waited.Truncate(time.Second)
			if l != o.logged && s.log.Enabled(context.Background(), slog.LevelDebug) {
				o.logged = l
				explain = e.explain()
				s.log.Debug("decision", "namespace", k.namespace, "scaledobject", k.name,
					"replicas", d.Replicas, "limit", string(d.Limit), "need", d.Need, "current", d.Current,
					"ready", d.Ready, "pending", d.Pending, "fit", e.workload.Fit, "share", e.share,
					"depth", d.Depth, "explain", explain)
			}
			if o.seen && o.limit != limit && explain == "" {
				explain = e.explain() // for the event
			}
		}
		c := o.decisions[limit]
		if c == nil {
			c = s.metrics.decisions.WithLabelValues(k.namespace, k.name, string(limit))
			o.decisions[limit] = c
		}
		c.Inc()
		if o.seen && o.limit != limit {
			o.changes.Inc()
			if s.opts.Events != nil {
				s.opts.Events.LimitChanged(e.so, o.limit, limit, explain)
			}
		}
		o.limit, o.seen = limit, true
	}
	for k := range p.obs {
		if !seen[k] {
			delete(p.obs, k)
		}
	}
}

func (p *planner) publish(next *plan) {
	p.lock.Lock()
	prev := p.cur
	p.cur = next
	p.lock.Unlock()
	close(prev.next)
}

// gather reads one trigger's inputs from the caches. With ctx already done it never waits;
// otherwise it may wait (until ctx ends) for the first read of a queue nobody asked for yet.
// It returns a gRPC status error when there is no decision to make.
func (s *Server) gather(ctx context.Context, e *entry, o *observation, now time.Time) (scaler.Input, scaler.Policy, error) {
	cfg, so := e.cfg, e.so
	ref := targetOf(cfg, so)
	pol := cfg.Policy
	if !cfg.MaxSet {
		pol.MaxReplicas = so.MaxReplicas // 0 takes KEDA's default, as in Decide
	}
	w, err := s.opts.Cluster.Workload(ref, cfg.Footprint, cfg.Reserve)
	if err != nil {
		return scaler.Input{}, pol, clusterStatus(fmt.Sprintf("scale target %s %s/%s", ref.Kind, ref.Namespace, ref.Name), err)
	}
	e.workload = w
	snap, err := s.opts.Queue.Snapshot(ctx, cfg.Selector)
	if err != nil {
		e.firstRead = errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		e.unread = e.firstRead || errors.Is(err, queue.ErrStatsPending)
		return scaler.Input{}, pol, queueStatus(cfg.Selector, err)
	}
	e.snap = snap
	if err := s.fresh(snap, now, cfg.Selector); err != nil {
		return scaler.Input{}, pol, err
	}
	in := scaler.Input{
		Queue: scaler.Queue{
			Ready: snap.Ready, Unacked: snap.Unacked,
			PublishRate: snap.PublishRate, DeliverRate: snap.DeliverRate, RatesKnown: snap.RatesKnown,
			InFlightVisible: snap.InFlightVisible,
		},
		Current: w.Current, Ready: w.Ready, Pending: w.Pending, Fit: w.Fit,
	}
	// When the latest step began, as the cluster tells it (so every replica of the scaler
	// agrees, and a restart does not forget it): the creation of the youngest pod that is not
	// Ready yet. What this replica saw itself (the spec replicas rising) covers the moment
	// before the step's pods exist.
	in.LastScaleUp = stepStarted(w.Pods)
	if o != nil {
		in.Queue.EmptySince = o.emptySince
		if o.lastScaleUp.After(in.LastScaleUp) {
			in.LastScaleUp = o.lastScaleUp
		}
	}
	// Which workers are busy matters only to a scale-down, and reading it costs the broker
	// two more requests per refresh (consumers and channels, each a listing of the whole
	// vhost): read it only while the answer, without it, would be below the current count.
	probe := pol
	probe.AllowBusyScaleDown = true // the queue alone: would it go below the current count?
	if scaler.Decide(probe, in, now).Replicas >= in.Current {
		e.busy = busyView{skipped: true, why: "no scale-down pending: consumers not read"}
	} else {
		e.busy = s.busyOf(cfg.Selector, w, snap)
	}
	// Asked for at this pass, read at the next refresh: the scale-down holds until then
	// rather than go ahead blind to which workers are busy.
	in.Busy, in.BusyKnown, in.BusyPending = e.busy.floor, e.busy.known, e.busy.pending
	if s.costs != nil && e.busy.known && w.Kind != "StatefulSet" {
		in.Removable, in.RemovableKnown = removable(w.Pods, e.busy), true
	}
	return in, pol, nil
}

// explain is the decision's sentence, and when the room that limited it is a share of the
// free room, what fits in the cluster: the decision counts only its share as what fits.
func (e *entry) explain() string {
	x := e.dec.Explain()
	if e.dec.Limit == scaler.LimitCapacity && e.share < e.workload.Fit {
		x += fmt.Sprintf(" (%d fit in the cluster; the rest is the share of other ScaledObjects that want more)", e.workload.Fit)
	}
	return x
}

// targetOf is the scale target a trigger's workers run in: the ScaledObject's, unless the
// metadata names another.
func targetOf(cfg *Config, so ScaledObject) TargetRef {
	if cfg.TargetKind != "" {
		return TargetRef{Namespace: so.Namespace, Kind: cfg.TargetKind, Name: cfg.TargetName}
	}
	return so.Target
}

// busyOf maps the queue's consumers to the target's pods. It never waits: the first call
// for a queue only asks the reader to fetch consumers from the next refresh on.
func (s *Server) busyOf(sel queue.Selector, w Workload, snap queue.Snapshot) busyView {
	cr, ok := s.opts.Queue.(ConsumerReader)
	switch {
	case !ok:
		return busyView{why: "the queue reader lists no consumers"}
	case !snap.InFlightVisible:
		return busyView{why: "the broker reading cannot see unacknowledged messages (AMQP)"}
	case w.Pods == nil:
		return busyView{why: "the target's pods are not listed"}
	}
	cs, err := cr.Consumers(noWait, sel)
	if errors.Is(err, context.Canceled) {
		return busyView{pending: true, why: "consumers not read yet: they are read from the next refresh on"}
	}
	if err != nil {
		return busyView{why: "consumers: " + err.Error()}
	}
	return mapBusy(w.Pods, w.Kind, cs)
}

// fresh reports an Unavailable error when snap is older than the configured bound.
func (s *Server) fresh(snap queue.Snapshot, now time.Time, sel queue.Selector) error {
	if age := now.Sub(snap.Fetched); age > s.opts.MaxSnapshotAge {
		return status.Errorf(codes.Unavailable, "queue %s: last successful read of broker %q was %s ago (bound %s): the broker is slow or unreachable; not answering from stale data",
			describe(sel), sel.Broker, age.Round(time.Millisecond), s.opts.MaxSnapshotAge)
	}
	return nil
}

func describe(sel queue.Selector) string {
	vh := sel.VHost
	if vh == "" {
		vh = queue.DefaultVHost
	}
	if sel.Pattern != "" {
		return fmt.Sprintf("pattern %q (vhost %q, %s)", sel.Pattern, vh, sel.Op)
	}
	return fmt.Sprintf("%q (vhost %q)", sel.Queue, vh)
}

// queueStatus maps a snapshot error to a gRPC status.
func queueStatus(sel queue.Selector, err error) error {
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return status.Errorf(codes.NotFound, "queue %s on broker %q does not exist: %v", describe(sel), sel.Broker, err)
	case errors.Is(err, queue.ErrUnknownBroker), errors.Is(err, queue.ErrUnsupported):
		return status.Errorf(codes.InvalidArgument, "%v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.Unavailable, "queue %s on broker %q: first read not done yet; retry", describe(sel), sel.Broker)
	case errors.Is(err, queue.ErrStatsPending):
		return status.Errorf(codes.Unavailable, "queue %s on broker %q: first read not done yet (the broker has no statistics for it yet: just declared, or the broker restarted); retry: %v", describe(sel), sel.Broker, err)
	case errors.Is(err, queue.ErrClosed):
		return status.Errorf(codes.Unavailable, "server shutting down")
	}
	return status.Errorf(codes.Unavailable, "broker %q unreachable, no queue reading (KEDA's fallback applies): %v", sel.Broker, err)
}

// clusterStatus maps a cluster cache error to a gRPC status.
func clusterStatus(what string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Errorf(codes.NotFound, "%s: not found in the cluster: %v", what, err)
	case errors.Is(err, ErrNotSynced):
		return status.Errorf(codes.Unavailable, "%s: %v", what, err)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}

// triggerKeys lists the keys of a plan's entries in a stable order.
func (pl *plan) sortedKeys() []entryKey {
	ks := make([]entryKey, 0, len(pl.entries))
	for k := range pl.entries {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if a.namespace != b.namespace {
			return a.namespace < b.namespace
		}
		if a.name != b.name {
			return a.name < b.name
		}
		return strings.Compare(a.canon, b.canon) < 0
	})
	return ks
}
