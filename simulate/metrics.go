package simulate

import "math"

// metrics accumulates one run's scores, tick by tick, in O(1) per tick (plus O(nodes) for
// overcommit).
type metrics struct {
	hist  []int64 // hist[w]: messages that waited w seconds
	count int64   // messages recorded in hist

	stay          int64 // Σ seconds messages spent in the ready queue, over every stay
	queueIntegral int64 // Σ over ticks of the ready queue length

	replicaSec, pendingSec, overcommitSec int64
	busyKilled, requeued, scaleActions    int64
	done                                  int64

	run, drainMax int64

	// SPEC elasticity: sums over ticks.
	thetaU, thetaO float64
	tauU, tauO     int64
	unstable       int64
	prevS, prevD   int64
	ticks          int64

	timeline []sample
	changes  []replicaChange
}

// replicaChange is one write to the Deployment's replicas.
type replicaChange struct {
	t        int64
	from, to int32
}

// sample is one row of a timeline.
type sample struct {
	t                                          int64
	arrivals, queue, unacked                   int64
	desired, running, ready, pending, busy     int32
	demand                                     int32
	cpuUsed, memUsed, overcommitted, allocated int64
	fullest                                    float64 // memory use of the fullest node, % of its allocatable
}

func (mt *metrics) init(m *model) {
	mt.hist = make([]int64, 0, 1024)
	mt.timeline = make([]sample, 0, m.horizon/m.every+1)
}

// wait records one message's wait: from its arrival to the start of the service that
// completed it (recorded at its acknowledgement, so a requeued message counts once).
func (mt *metrics) wait(w int64) { mt.waits(w, 1) }

func (mt *metrics) waits(w, n int64) {
	for int64(len(mt.hist)) <= w {
		mt.hist = append(mt.hist, 0)
	}
	mt.hist[w] += n
	mt.count += n
}

func (mt *metrics) sample(s *sim) {
	m := s.m
	t := s.t
	mt.queueIntegral += s.ready
	mt.replicaSec += int64(s.bound)
	mt.pendingSec += int64(s.pending)
	over := int64(0)
	for i := range s.nodes {
		if s.nodes[i].overcommitted(&m.worker) {
			over++
		}
	}
	if over > 0 {
		mt.overcommitSec++
	}
	if s.ready > 0 {
		mt.run++
		mt.drainMax = max(mt.drainMax, mt.run)
	} else {
		mt.run = 0
	}

	// SPEC: demand d(t) against supply s(t) = Ready workers.
	d, sup := int64(m.demand[t]), int64(s.readyN)
	den := float64(max(d, 1))
	if sup < d {
		mt.thetaU += float64(d-sup) / den
		mt.tauU++
	} else if sup > d {
		mt.thetaO += float64(sup-d) / den
		mt.tauO++
	}
	if mt.ticks > 0 && sign(sup-mt.prevS) != sign(d-mt.prevD) {
		mt.unstable++
	}
	mt.prevS, mt.prevD = sup, d
	mt.ticks++

	if t%m.every == 0 {
		row := sample{
			t: t, arrivals: m.arrivedBy(t) - m.arrivedBy(t-m.every), queue: s.ready, unacked: s.unacked,
			desired: s.spec, running: int32(s.bound), ready: int32(s.readyN), pending: int32(s.pending),
			busy: int32(s.busyW), demand: m.demand[t], overcommitted: over,
		}
		for i := range s.nodes {
			u := s.nodes[i].used(&m.worker)
			if a := s.nodes[i].allocatable.Memory; a > 0 {
				row.fullest = max(row.fullest, 100*float64(u.Memory)/float64(a))
			}
			row.cpuUsed += u.MilliCPU
			row.memUsed += u.Memory
			row.allocated += s.nodes[i].requested(&m.worker).Memory
		}
		mt.timeline = append(mt.timeline, row)
	}
}

func sign(x int64) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// percentile is the nearest-rank percentile of the recorded waits (exact: waits are whole
// seconds).
func (mt *metrics) percentile(p float64) float64 {
	if mt.count == 0 {
		return 0
	}
	rank := int64(math.Ceil(p / 100 * float64(mt.count)))
	rank = min(max(rank, 1), mt.count)
	var seen int64
	for w, n := range mt.hist {
		seen += n
		if seen >= rank {
			return float64(w)
		}
	}
	return float64(len(mt.hist) - 1)
}

// Result is one policy's scores. The JSON keys are an interface: scripts read them.
type Result struct {
	Name string `json:"name"`
	// Message wait, from arrival to delivery to a worker (for a requeued message, to its last
	// delivery), in seconds.
	WaitP50 float64 `json:"wait_p50_s"`
	WaitP95 float64 `json:"wait_p95_s"`
	WaitP99 float64 `json:"wait_p99_s"`
	WaitMax float64 `json:"wait_max_s"`
	// DrainMax is the longest stretch during which the queue had ready messages (s).
	DrainMax float64 `json:"drain_max_s"`
	// Pod-seconds of worker pods bound to nodes (starting or Ready), and of Pending pods.
	ReplicaSeconds    float64 `json:"replica_seconds"`
	PendingPodSeconds float64 `json:"pending_pod_seconds"`
	// OvercommitSeconds is the time during which at least one node's memory use exceeded its
	// allocatable: time at risk of OOM kills.
	OvercommitSeconds float64 `json:"overcommit_seconds"`
	// BusyKilled counts workers killed while holding messages: deleted by a scale-down and
	// still holding them when their termination grace period ended.
	BusyKilled   int64 `json:"busy_killed"`
	ScaleActions int64 `json:"scale_actions"`
	// SPEC elasticity metrics, in percent: under/over-provisioning accuracy and timeshare,
	// and instability.
	ThetaU      float64 `json:"theta_u"`
	ThetaO      float64 `json:"theta_o"`
	TauU        float64 `json:"tau_u"`
	TauO        float64 `json:"tau_o"`
	Instability float64 `json:"instability"`
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

func (mt *metrics) result(name string) Result {
	T := float64(max(mt.ticks, 1))
	return Result{
		Name:    name,
		WaitP50: mt.percentile(50), WaitP95: mt.percentile(95), WaitP99: mt.percentile(99),
		WaitMax: mt.percentile(100), DrainMax: float64(mt.drainMax),
		ReplicaSeconds: float64(mt.replicaSec), PendingPodSeconds: float64(mt.pendingSec),
		OvercommitSeconds: float64(mt.overcommitSec),
		BusyKilled:        mt.busyKilled, ScaleActions: mt.scaleActions,
		ThetaU: round3(100 * mt.thetaU / T), ThetaO: round3(100 * mt.thetaO / T),
		TauU: round3(100 * float64(mt.tauU) / T), TauO: round3(100 * float64(mt.tauO) / T),
		Instability: round3(100 * float64(mt.unstable) / float64(max(mt.ticks-1, 1))),
	}
}
