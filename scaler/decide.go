package scaler

import (
	"fmt"
	"math"
	"time"
)

// Limit names the factor that set a decision. The set is small and fixed: it is a metric
// label and an event reason.
type Limit string

// The limiting factors.
const (
	// LimitQueue: the answer is what the queue needs (including zero for an empty queue).
	LimitQueue Limit = "queue"
	// LimitMax: the queue needs more than MaxReplicas.
	LimitMax Limit = "max"
	// LimitStep: the next step is not allowed yet, or the step size bounds the answer.
	LimitStep Limit = "step"
	// LimitCapacity: no more new workers fit in the cluster (or in this target's share).
	LimitCapacity Limit = "capacity"
	// LimitPending: the target has Pending-unschedulable pods; stepping stops.
	LimitPending Limit = "pending"
	// LimitIdle: in-flight work is invisible and the queue has not been empty for IdleAfter;
	// the current count is held.
	LimitIdle Limit = "idle"
	// LimitBusy: scale-down stopped at the number of workers still holding messages.
	LimitBusy Limit = "busy"
	// LimitError: the queue could not be read; the current count is held.
	LimitError Limit = "error"
)

// Limits lists every Limit, in a fixed order (for metrics that export one series per value).
var Limits = [...]Limit{LimitQueue, LimitMax, LimitStep, LimitCapacity, LimitPending, LimitIdle, LimitBusy, LimitError}

// Queue is what the broker says about the queue (or the aggregate of the queues) that the
// workers consume.
type Queue struct {
	Ready   int64 // messages waiting for a consumer
	Unacked int64 // messages delivered and not yet acknowledged: work in progress

	// Arrival and delivery rates in messages per second, when the reading has them.
	PublishRate float64
	DeliverRate float64
	RatesKnown  bool

	// InFlightVisible is false when the reading cannot see unacknowledged messages (AMQP
	// passive declare); Unacked is then 0 and says nothing.
	InFlightVisible bool

	// EmptySince is when the queue was first seen empty in the current run of empty readings;
	// zero when it is not empty or not known. Used with IdleAfter.
	EmptySince time.Time
}

// Input is everything Decide needs about one ScaledObject at one instant.
type Input struct {
	Queue Queue

	// Failed marks a queue reading that failed. Queue is then meaningless: the decision holds
	// the current count and never answers zero because of it.
	Failed bool

	// Target state, from the cluster.
	Current int32 // spec replicas
	Ready   int32 // Ready pods
	Pending int32 // Pending pods the scheduler could not place (PodScheduled=False, Unschedulable)

	// Busy is how many workers hold unacknowledged messages, when BusyKnown.
	Busy      int32
	BusyKnown bool
	// BusyPending: which workers are busy is being read (asked for now, known at the next
	// reading). A scale-down holds the current count until then.
	BusyPending bool

	// Fit is how many more workers of the target's footprint the cluster can place (this
	// target's share of the free room when several targets compete). May be negative when the
	// cluster is overcommitted: then no new worker fits.
	Fit int32

	// Removable, when RemovableKnown, is how many pods the cluster would remove before any
	// busy one: pods not running yet, and idle pods whose deletion cost is already below every
	// busy pod's. A scale-down removes no more than that, so that a busy worker is never the
	// next victim while the costs that protect it are still being written.
	Removable      int32
	RemovableKnown bool

	// LastScaleUp is when the latest step began: the target's replica count was raised, or
	// its youngest pod that is not Ready yet was created (zero: unknown, treated as long ago).
	// The next step waits until the pods of that step are Ready or StepTimeout has passed
	// since this time.
	LastScaleUp time.Time
}

// Decision is the answer for one ScaledObject, with what it was computed from, so that it can
// explain itself. It holds no strings built at decision time: Explain formats on demand.
type Decision struct {
	Replicas int32 // what the target should run
	Limit    Limit // the factor that set Replicas

	Need    int32 // workers the queue needs (before limits)
	Current int32
	Max     int32
	Step    int32 // size of the step allowed from Current
	Fit     int32
	Pending int32
	Busy    int32
	Ready   int32
	Depth   int64 // ready + unacked messages
	Waited  time.Duration
	// BusyPending: a scale-down held while the busy workers are read (Input.BusyPending).
	BusyPending bool
}

// Decide computes how many workers the target should run. It is pure: same arguments, same
// answer. p is used with its defaults applied; an invalid p (see Policy.Validate) must be
// rejected by the caller before.
func Decide(p Policy, in Input, now time.Time) Decision {
	p = p.WithDefaults()
	cur := max(in.Current, 0)
	fit := max(in.Fit, 0)
	d := Decision{
		Current: cur, Max: p.MaxReplicas, Fit: in.Fit, Pending: in.Pending,
		Busy: in.Busy, Ready: in.Ready,
	}
	d.Step = stepSize(p, cur)

	if in.Failed {
		// Hold what runs; with nothing running, start one worker if one fits, so that a broken
		// reading never parks the workload at zero while work may be waiting.
		d.Replicas = min(cur, p.MaxReplicas)
		if d.Replicas == 0 && fit > 0 && p.MaxReplicas > 0 {
			d.Replicas = 1
		}
		d.Limit = LimitError
		return d
	}

	q := in.Queue
	work := max(q.Ready, 0) + max(q.Unacked, 0) // any work at all: never zero while > 0
	counted := max(q.Ready, 0)
	if !p.ExcludeUnacked {
		counted += max(q.Unacked, 0)
	}
	d.Depth = work
	d.Need = demand(p, q, counted, work)

	if work == 0 {
		if !q.InFlightVisible && cur > 0 {
			waited := time.Duration(0)
			if !q.EmptySince.IsZero() {
				waited = now.Sub(q.EmptySince)
			}
			d.Waited = waited
			if waited < p.IdleAfter {
				d.Replicas = min(cur, p.MaxReplicas)
				d.Limit = LimitIdle
				return d
			}
		}
		d.Replicas, d.Limit = 0, LimitQueue
		return d
	}

	switch {
	case d.Need < cur:
		return scaleDown(p, in, d)
	case d.Need == cur:
		d.Replicas, d.Limit = cur, LimitQueue
		if cur > p.MaxReplicas {
			d.Replicas, d.Limit = p.MaxReplicas, LimitMax
		}
		return d
	default:
		return scaleUp(p, in, d, fit, now)
	}
}

// demand is the number of workers the queue needs: the backlog divided by what one worker
// holds, raised to keep up with arrivals when a service time and rates are known, and at
// least one while any work exists.
func demand(p Policy, q Queue, counted, work int64) int32 {
	need := math.Ceil(float64(counted) / p.MessagesPerReplica)
	if p.ServiceTime > 0 && q.RatesKnown && q.PublishRate > 0 {
		inService := q.PublishRate * p.ServiceTime.Seconds()
		need = max(need, math.Ceil(inService/p.MessagesPerReplica))
	}
	if work > 0 && need < 1 {
		need = 1
	}
	if need > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(need)
}

func stepSize(p Policy, cur int32) int32 {
	s := float64(p.StepPods)
	if byPercent := math.Ceil(float64(cur) * p.StepPercent); byPercent > s {
		s = byPercent
	}
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return max(int32(s), 1)
}

func scaleDown(p Policy, in Input, d Decision) Decision {
	want, limit := d.Need, LimitQueue
	switch {
	case !in.Queue.InFlightVisible:
		// Busy workers cannot be told from idle ones: hold until the queue has been empty for
		// IdleAfter (handled by the caller's empty-queue branch).
		want, limit = d.Current, LimitIdle
	case in.BusyPending && !p.AllowBusyScaleDown:
		want, limit, d.BusyPending = d.Current, LimitBusy, true
	case in.BusyKnown && !p.AllowBusyScaleDown && in.Busy > want:
		want, limit = min(in.Busy, d.Current), LimitBusy
	case !in.BusyKnown && !p.AllowBusyScaleDown && min(max(in.Queue.Unacked, 0), int64(d.Current)) > int64(want):
		// Which workers are busy is unknown (consumers could not be mapped to pods), but each
		// unacknowledged message may be held by a different worker: keep as many.
		want, limit = int32(min(in.Queue.Unacked, int64(d.Current))), LimitBusy
	}
	if in.RemovableKnown && !p.AllowBusyScaleDown && d.Current-want > max(in.Removable, 0) {
		want, limit = d.Current-max(in.Removable, 0), LimitBusy
	}
	if want > p.MaxReplicas {
		want, limit = p.MaxReplicas, LimitMax
	}
	d.Replicas, d.Limit = want, limit
	return d
}

func scaleUp(p Policy, in Input, d Decision, fit int32, now time.Time) Decision {
	cur := d.Current
	if cur >= p.MaxReplicas {
		d.Replicas, d.Limit = p.MaxReplicas, LimitMax
		return d
	}
	// Pending pods of a target at zero replicas are being deleted: they do not block the first
	// worker.
	if in.Pending > 0 && cur > 0 {
		d.Replicas, d.Limit = cur, LimitPending
		return d
	}
	stepDone := in.Ready >= cur || in.LastScaleUp.IsZero() || now.Sub(in.LastScaleUp) >= p.StepTimeout
	if !stepDone {
		d.Replicas, d.Limit = cur, LimitStep
		return d
	}
	// The tightest bound wins; on a tie the more fundamental reason is named: the queue is
	// served, then the replica limit, then the cluster, then the step.
	want, limit := d.Need, LimitQueue
	if p.MaxReplicas < want {
		want, limit = p.MaxReplicas, LimitMax
	}
	if room := addSat(cur, fit); room < want {
		want, limit = room, LimitCapacity
	}
	if next := addSat(cur, d.Step); next < want {
		want, limit = next, LimitStep
	}
	d.Replicas, d.Limit = want, limit
	return d
}

func addSat(a, b int32) int32 {
	if s := int64(a) + int64(b); s < math.MaxInt32 {
		return int32(s)
	}
	return math.MaxInt32
}

// Explain is a one-line human explanation of the decision.
func (d Decision) Explain() string {
	switch d.Limit {
	case LimitError:
		return fmt.Sprintf("queue unreadable: holding %d replicas (was %d)", d.Replicas, d.Current)
	case LimitIdle:
		if d.Depth == 0 {
			return fmt.Sprintf("queue empty for %s but in-flight work is invisible: holding %d until idle", d.Waited.Round(time.Second), d.Replicas)
		}
		return fmt.Sprintf("%d messages need %d, but in-flight work is invisible: holding %d until the queue is idle", d.Depth, d.Need, d.Replicas)
	case LimitBusy:
		if d.BusyPending {
			return fmt.Sprintf("%d messages need %d: holding %d until the busy workers are read (next broker refresh)", d.Depth, d.Need, d.Replicas)
		}
		return fmt.Sprintf("%d messages need %d, but %d workers are busy: scaling down only to %d", d.Depth, d.Need, d.Busy, d.Replicas)
	case LimitPending:
		return fmt.Sprintf("%d messages need %d, but %d pods are Pending-unschedulable: holding %d", d.Depth, d.Need, d.Pending, d.Replicas)
	case LimitStep:
		if d.Replicas == d.Current {
			return fmt.Sprintf("%d messages need %d: waiting for the last step (%d/%d Ready) before the next", d.Depth, d.Need, d.Ready, d.Current)
		}
		return fmt.Sprintf("%d messages need %d: stepping %d → %d (step %d)", d.Depth, d.Need, d.Current, d.Replicas, d.Step)
	case LimitCapacity:
		return fmt.Sprintf("%d messages need %d, but only %d more fit: %d → %d", d.Depth, d.Need, max(d.Fit, 0), d.Current, d.Replicas)
	case LimitMax:
		return fmt.Sprintf("%d messages need %d, capped at maxReplicas %d", d.Depth, d.Need, d.Max)
	default:
		if d.Depth == 0 {
			return "queue empty: scale to zero"
		}
		return fmt.Sprintf("%d messages need %d replicas", d.Depth, d.Need)
	}
}
