package simulate

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"time"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/scaler"
)

// cohort is messages that entered the queue in the same second, in FIFO order: messages
// first … first+n−1, which arrived at arrival and were (re)queued at enq.
type cohort struct{ arrival, enq, first, n int64 }

type slot struct{ msg, arrival, start, done int64 } // msg < 0: free

type pod struct {
	id         int64
	created    int64
	node       int   // index in sim.nodes; -1 while Pending (unschedulable)
	readyAt    int64 // tick it turns Ready, once bound
	ready      bool
	readySince int64
	slots      []slot
	busy       int   // slots holding a message
	snapBusy   int   // busy slots at the scaler's last broker reading
	cost       int   // controller.kubernetes.io/pod-deletion-cost (headroom only)
	killAt     int64 // while terminating: when the grace period ends
}

// snapshot is the scaler's last broker reading.
type snapshot struct {
	ready, unacked int64
	busy           int32
	rate           float64
}

// sim is one policy's run over the shared arrivals and cluster.
type sim struct {
	m      *model
	policy string
	ctl    controller

	t    int64
	base time.Time

	// Queue: cohorts[qh:] in FIFO order; ready is their total.
	q       []cohort
	qh      int
	ready   int64
	unacked int64
	nextMsg int64

	nodes    []nodeState
	pods     []*pod
	spec     int32
	lastUp   int64 // tick of the last scale-up; -1 none
	nextID   int64
	nextDone int64
	nextRdy  int64
	rr       int

	pending, bound, readyN, busyW int

	// draining: deleted workers finishing the messages in hand within the grace period; they
	// still hold their node's room and take no new message. drainHeld is their messages.
	draining  []*pod
	drainHeld int64
	nextKill  int64

	// headroom: the scaler's broker reading, and whether pods get deletion costs.
	snap    snapshot
	useSnap bool
	refresh int64
	useCost bool

	met metrics
}

const never = math.MaxInt64

func newSim(m *model, policy string) *sim {
	s := &sim{m: m, policy: policy, base: m.base, lastUp: -1, nextDone: never, nextRdy: never, nextKill: never}
	s.nodes = append([]nodeState(nil), m.nodes...)
	s.met.init(m)
	return s
}

func (s *sim) now() time.Time { return s.base.Add(time.Duration(s.t) * time.Second) }

// start brings up n workers at t=0, already Ready: every policy starts from a warm fleet at
// its initial size.
func (s *sim) start(n int32) {
	s.spec = n
	for range n {
		p := s.newPod()
		if p.node >= 0 && !p.ready {
			p.ready, p.readySince, p.readyAt = true, 0, 0
			s.readyN++
		}
	}
}

func (s *sim) newPod() *pod {
	p := &pod{id: s.nextID, created: s.t, node: -1, slots: make([]slot, s.m.consumers)}
	for i := range p.slots {
		p.slots[i].msg = -1
	}
	s.nextID++
	s.pods = append(s.pods, p)
	s.place(p)
	return p
}

// place binds a Pending pod to a node if one fits; it then turns Ready after the start
// latency.
func (s *sim) place(p *pod) {
	n := schedule(s.nodes, &s.m.worker)
	if n < 0 {
		s.pending++
		return
	}
	p.node = n
	s.nodes[n].workers++
	s.bound++
	p.readyAt = s.t + s.m.startLatency
	if p.readyAt <= s.t {
		p.ready, p.readySince = true, s.t
		s.readyN++
	} else {
		s.nextRdy = min(s.nextRdy, p.readyAt)
	}
}

// setReplicas is a write to the Deployment's spec.replicas, and what the ReplicaSet
// controller then does: create pods, or pick victims and delete them.
func (s *sim) setReplicas(n int32) {
	n = max(n, 0)
	if n == s.spec {
		return
	}
	s.met.scaleActions++
	s.met.changes = append(s.met.changes, replicaChange{t: s.t, from: s.spec, to: n})
	if n > s.spec {
		s.lastUp = s.t
		for range n - s.spec {
			s.newPod()
		}
		s.spec = n
		return
	}
	if s.useCost {
		// headroom annotates pods before the scale-down takes effect: idle pods cost 0, busy
		// pods cost what they hold (from its last broker reading).
		for _, p := range s.pods {
			p.cost = p.snapBusy
		}
	}
	victims := s.victims(int(s.spec - n))
	for _, p := range victims {
		s.remove(p)
	}
	s.spec = n
	s.retryPending()
}

// victims orders pods as the ReplicaSet controller does before deleting the first k
// (k8s.io/kubernetes pkg/controller/replicaset getPodsToDelete with
// getPodsRankedByRelatedPodsOnSameNode, and pkg/controller ActivePodsWithRanks.Less with the
// LogarithmicScaleDown feature, on by default): unassigned before assigned; not Ready before
// Ready; lower pod-deletion-cost first; more pods of the same ReplicaSet on the node first;
// then Ready for less time, then created more recently, both compared on a power-of-two
// scale; then a pseudo-random order (the controller compares UIDs). Busy workers get no
// protection unless their deletion cost says so.
func (s *sim) victims(k int) []*pod {
	perNode := map[int]int{}
	for _, p := range s.pods {
		if p.node >= 0 {
			perNode[p.node]++
		}
	}
	ps := append([]*pod(nil), s.pods...)
	log2 := func(d int64) int {
		if d <= 0 {
			return -1
		}
		return bits.Len64(uint64(d))
	}
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if (a.node < 0) != (b.node < 0) {
			return a.node < 0
		}
		if a.ready != b.ready {
			return !a.ready
		}
		if a.cost != b.cost {
			return a.cost < b.cost
		}
		if a.node >= 0 && b.node >= 0 && perNode[a.node] != perNode[b.node] {
			return perNode[a.node] > perNode[b.node]
		}
		if a.ready && b.ready {
			if x, y := log2(s.t-a.readySince), log2(s.t-b.readySince); x != y {
				return x < y
			}
		}
		if x, y := log2(s.t-a.created), log2(s.t-b.created); x != y {
			return x < y
		}
		return unit(0x51d, a.id) < unit(0x51d, b.id)
	})
	return ps[:min(k, len(ps))]
}

// remove deletes a pod. An idle worker goes at once. A busy one is sent SIGTERM: it stops
// consuming and finishes the messages in hand that end within the grace period, then exits;
// what it still holds when the grace period ends is lost (see kill).
func (s *sim) remove(p *pod) {
	s.detach(p)
	if p.busy == 0 {
		s.release(p)
		return
	}
	p.killAt = s.t + s.m.grace
	if p.killAt <= s.t {
		s.kill(p, false)
		return
	}
	for _, sl := range p.slots {
		if sl.msg >= 0 {
			s.drainHeld++
		}
	}
	s.draining = append(s.draining, p)
	s.nextKill = min(s.nextKill, p.killAt)
}

// detach takes a pod out of the ReplicaSet: no longer Ready, no new message.
func (s *sim) detach(p *pod) {
	if p.node >= 0 && p.ready {
		s.readyN--
	}
	p.ready = false
	for i, q := range s.pods {
		if q == p {
			s.pods = append(s.pods[:i], s.pods[i+1:]...)
			break
		}
	}
}

// release frees a gone pod's place.
func (s *sim) release(p *pod) {
	switch {
	case p.node < 0:
		s.pending--
	default:
		s.nodes[p.node].workers--
		s.bound--
	}
}

// kill ends a terminating worker that still holds messages (SIGKILL at the end of the grace
// period): its messages go back to the head of the queue.
func (s *sim) kill(p *pod, draining bool) {
	if p.busy > 0 {
		s.met.busyKilled++
		var back []cohort
		for i := range p.slots {
			sl := &p.slots[i]
			if sl.msg < 0 {
				continue
			}
			back = append(back, cohort{arrival: sl.arrival, enq: s.t, first: sl.msg, n: 1})
			s.met.requeued++
			s.unacked--
			if draining {
				s.drainHeld--
			}
			sl.msg = -1
		}
		sort.Slice(back, func(i, j int) bool { return back[i].first < back[j].first })
		s.pushFront(back)
		s.nodes[p.node].busy--
		s.busyW--
		p.busy = 0
	}
	s.release(p)
}

// endGrace kills the terminating workers whose grace period ended.
func (s *sim) endGrace() {
	s.nextKill = never
	kept := s.draining[:0]
	for _, p := range s.draining {
		if p.killAt <= s.t {
			s.kill(p, true)
			continue
		}
		s.nextKill = min(s.nextKill, p.killAt)
		kept = append(kept, p)
	}
	s.draining = kept
}

func (s *sim) pushFront(cs []cohort) {
	for _, c := range cs {
		s.ready += c.n
	}
	if len(cs) <= s.qh {
		s.qh -= len(cs)
		copy(s.q[s.qh:], cs)
		return
	}
	nq := make([]cohort, 0, len(cs)+len(s.q)-s.qh)
	nq = append(append(nq, cs...), s.q[s.qh:]...)
	s.q, s.qh = nq, 0
}

// retryPending lets the scheduler try Pending pods again after room was freed.
func (s *sim) retryPending() {
	if s.pending == 0 {
		return
	}
	for _, p := range s.pods {
		if p.node < 0 {
			s.pending--
			s.place(p)
		}
	}
}

// step advances the model by one second.
func (s *sim) step() {
	t := s.t
	if t >= s.nextRdy {
		s.nextRdy = never
		for _, p := range s.pods {
			if p.node >= 0 && !p.ready {
				if p.readyAt <= t {
					p.ready, p.readySince = true, t
					s.readyN++
				} else {
					s.nextRdy = min(s.nextRdy, p.readyAt)
				}
			}
		}
	}
	if t >= s.nextDone {
		s.complete()
	}
	if t >= s.nextKill {
		s.endGrace()
	}
	if t < int64(len(s.m.arr.counts)) {
		if c := s.m.arr.counts[t]; c > 0 {
			s.q = append(s.q, cohort{arrival: t, enq: t, first: s.nextMsg, n: c})
			s.nextMsg += c
			s.ready += c
		}
	}
	s.ctl.step(s)
	if s.ready > 0 && int64(s.readyN*s.m.consumers) > s.unacked-s.drainHeld {
		s.dispatch()
	}
	if s.useSnap && t%s.refresh == 0 {
		s.read()
	}
	s.met.sample(s)
}

// complete acknowledges the messages whose service ended.
func (s *sim) complete() {
	s.nextDone = never
	for _, p := range s.pods {
		s.completeOn(p)
	}
	if len(s.draining) == 0 {
		return
	}
	kept := s.draining[:0]
	for _, p := range s.draining {
		before := p.busy
		s.completeOn(p)
		s.drainHeld -= int64(before - p.busy)
		if p.busy == 0 {
			s.release(p) // finished its work within the grace period: exits
			continue
		}
		kept = append(kept, p)
	}
	s.draining = kept
}

// completeOn acknowledges one worker's messages whose service ended.
func (s *sim) completeOn(p *pod) {
	if p.busy == 0 {
		return
	}
	t := s.t
	for i := range p.slots {
		sl := &p.slots[i]
		if sl.msg < 0 {
			continue
		}
		if sl.done <= t {
			s.met.wait(sl.start - sl.arrival)
			sl.msg = -1
			s.unacked--
			p.busy--
			s.met.done++
		} else {
			s.nextDone = min(s.nextDone, sl.done)
		}
	}
	if p.busy == 0 {
		s.nodes[p.node].busy--
		s.busyW--
	}
}

// dispatch delivers queued messages to free consumers of Ready workers, round-robin over
// workers, FIFO over messages.
func (s *sim) dispatch() {
	t := s.t
	n := len(s.pods)
	for k := 0; k < n && s.ready > 0; k++ {
		p := s.pods[(s.rr+k)%n]
		if !p.ready || p.busy == len(p.slots) {
			continue
		}
		for i := range p.slots {
			sl := &p.slots[i]
			if sl.msg >= 0 {
				continue
			}
			if s.ready == 0 {
				break
			}
			c := &s.q[s.qh]
			sl.msg, sl.arrival, sl.start = c.first, c.arrival, t
			sl.done = t + s.m.arr.svc(c.first)
			s.nextDone = min(s.nextDone, sl.done)
			s.met.stay += t - c.enq
			c.first++
			c.n--
			if c.n == 0 {
				s.qh++
			}
			s.ready--
			s.unacked++
			if p.busy == 0 {
				s.nodes[p.node].busy++
				s.busyW++
			}
			p.busy++
		}
	}
	s.rr++
	if s.qh > 1024 && s.qh*2 > len(s.q) {
		s.q = append(s.q[:0], s.q[s.qh:]...)
		s.qh = 0
	}
}

// read is the scaler's broker reading (management API: ready, unacknowledged, per-consumer
// unacknowledged counts, publish rate).
func (s *sim) read() {
	w := min(s.t+1, rateWindow)
	s.snap = snapshot{
		ready: s.ready, unacked: s.unacked, busy: int32(s.busyW),
		rate: float64(s.m.arrivedBy(s.t)-s.m.arrivedBy(s.t-w)) / float64(w),
	}
	for _, p := range s.pods {
		p.snapBusy = p.busy
	}
}

// rateWindow is the window of the publish rate the scaler reads (seconds).
const rateWindow = 30

// headroomInput is what the server gathers for scaler.Decide: the broker reading, and the
// target and cluster state from the informers (live).
func (s *sim) headroomInput(fp capacity.Footprint, reserve capacity.Resources) scaler.Input {
	// As the server does (capacity.Fit over the nodes' pod requests and live usage), the
	// target's own pods count at max(requests, footprint): idle workers are reserved the room
	// they will use once busy.
	w := &s.m.worker
	own := capacity.Footprint{MilliCPU: max(w.req.MilliCPU, fp.MilliCPU), Memory: max(w.req.Memory, fp.Memory)}
	nodes := make([]capacity.Node, len(s.nodes))
	for i := range s.nodes {
		n := &s.nodes[i]
		nodes[i] = n.capacityNode(w, true)
		nodes[i].Requested.MilliCPU = n.tenantReq.MilliCPU + n.workers*own.MilliCPU
		nodes[i].Requested.Memory = n.tenantReq.Memory + n.workers*own.Memory
	}
	in := scaler.Input{
		Queue: scaler.Queue{
			Ready: s.snap.ready, Unacked: s.snap.unacked,
			PublishRate: s.snap.rate, RatesKnown: true, InFlightVisible: true,
		},
		Current: s.spec, Ready: int32(s.readyN), Pending: int32(s.pending),
		Busy: s.snap.busy, BusyKnown: true,
		Fit: int32(min(capacity.Fit(nodes, fp, capacity.Constraints{}, reserve), math.MaxInt32)),
	}
	if s.lastUp >= 0 {
		in.LastScaleUp = s.base.Add(time.Duration(s.lastUp) * time.Second)
	}
	return in
}

// run plays the whole horizon.
func (s *sim) run(ctx context.Context, progress func(done int64)) error {
	for s.t = 0; s.t < s.m.horizon; s.t++ {
		s.step()
		if s.t&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if progress != nil {
				progress(s.t)
			}
		}
	}
	// Messages in service at the end count with the wait they had; messages still queued
	// with the wait they had so far.
	for _, p := range append(s.pods, s.draining...) {
		for _, sl := range p.slots {
			if sl.msg >= 0 {
				s.met.wait(sl.start - sl.arrival)
			}
		}
	}
	for _, c := range s.q[s.qh:] {
		s.met.waits(s.m.horizon-c.arrival, c.n)
		s.met.stay += (s.m.horizon - c.enq) * c.n
	}
	if s.met.stay != s.met.queueIntegral {
		return fmt.Errorf("%s: Little's law check failed: ∫queue dt = %d message-seconds but the waits sum to %d", s.policy, s.met.queueIntegral, s.met.stay)
	}
	return nil
}
