package simulate

import (
	"github.com/headroom-autoscaler/headroom/scaler"
)

// defaultBrokerRefresh is the server's default --refresh (queue.DefaultRefresh), in seconds.
const defaultBrokerRefresh = 5

// controller is what changes a policy's Deployment replicas, called once per tick after
// arrivals and before dispatch.
type controller interface{ step(s *sim) }

// static never changes the replica count (fixed, bound).
type static struct{}

func (static) step(*sim) {}

// keda is KEDA's operator and the HPA it creates, for one ScaledObject.
//
// KEDA (pkg/scaling/scale_handler.go checkScalers, pkg/scaling/executor/scale_scaledobjects.go
// RequestScale): every pollingInterval it asks the scaler IsActive; when active and the target
// is at zero it scales to max(minReplicaCount, 1) itself, and records the time; when not
// active for cooldownPeriod since the last active time and minReplicaCount is 0, it scales
// to zero. With external-push, a pushed "active" is handled at once, like a poll. Above
// zero, the HPA (minReplicas = max(minReplicaCount, 1)) syncs every hpaSyncPeriod and asks
// KEDA's metrics server for the metric, which queries the scaler live (scaler.HPA.Sync).
type keda struct {
	hpa        scaler.HPA
	st         scaler.HPAState
	poll       int64
	cooldown   int64
	sync       int64
	push       int64 // 0: no push; else every push seconds
	minRep     int32
	lastActive int64
	active     func(s *sim) bool
	value      func(s *sim) float64 // metric value at target 1
}

func (k *keda) activate(s *sim) {
	k.lastActive = s.t
	if s.spec == 0 {
		s.setReplicas(max(k.minRep, 1))
	}
}

func (k *keda) step(s *sim) {
	t := s.t
	if k.push > 0 && t%k.push == 0 && s.spec == 0 && k.active(s) {
		k.activate(s)
	}
	if t%k.poll == 0 {
		switch {
		case k.active(s):
			k.activate(s)
		case s.spec > 0 && k.minRep == 0 && t-k.lastActive >= k.cooldown:
			s.setReplicas(0)
		}
		if s.spec < k.minRep {
			s.setReplicas(k.minRep)
		}
	}
	if t%k.sync == 0 && s.spec > 0 {
		s.setReplicas(k.hpa.Sync(&k.st, s.spec, k.value(s), s.now()))
	}
}

// cpuHPA is a plain HPA on CPU utilization. The value handed to scaler.HPA.Sync (target 1)
// is Σ over Ready pods of usage/request divided by the target utilization, so that the
// proposal is ceil(Σ utilization / target) — what ReplicaCalculator.GetResourceReplicas
// computes when scaling up with not-yet-Ready pods counted at zero usage — and the usage
// ratio tested against the tolerance is the mean utilization over the target.
type cpuHPA struct {
	hpa    scaler.HPA
	st     scaler.HPAState
	sync   int64
	target float64 // fraction of requests
}

func (c *cpuHPA) step(s *sim) {
	if s.t%c.sync != 0 || s.spec == 0 || s.readyN == 0 {
		return
	}
	w := &s.m.worker
	var util float64
	for _, p := range s.pods {
		if !p.ready {
			continue
		}
		use := w.idle.MilliCPU
		if p.busy > 0 {
			use = w.busy.MilliCPU
		}
		util += float64(use) / float64(w.req.MilliCPU)
	}
	s.setReplicas(c.hpa.Sync(&c.st, s.spec, util/c.target, s.now()))
}

// newController builds a policy's controller and sets up its sim.
func (m *model) newController(s *sim, policy string) controller {
	sc := m.sc
	k := sc.KEDA
	poll, cooldown, sync := ticks(k.PollingInterval.Duration, 30), ticks(k.CooldownPeriod.Duration, 300), ticks(k.HPASyncPeriod.Duration, 15)
	min0, maxR := sc.Workload.MinReplicas, m.maxReplicas
	messages := func(s *sim) float64 { return float64(s.ready + s.unacked) }
	switch policy {
	case PolicyHeadroom:
		h := sc.Policies.Headroom
		p, _ := sc.headroomPolicy() // validated
		fp := m.worker.req
		if f := h.Footprint; f != nil {
			if f.CPU.milli > 0 {
				fp.MilliCPU = f.CPU.milli
			}
			if f.Memory.value > 0 {
				fp.Memory = f.Memory.value
			}
		}
		reserve := h.Reserve.resources()
		s.useSnap, s.useCost = true, true
		s.refresh = ticks(h.BrokerRefresh.Duration, defaultBrokerRefresh)
		behavior := h.Behavior
		if behavior == nil {
			behavior = &BehaviorSpec{Preset: "exact"}
		}
		b, _ := behavior.behavior(maxR)
		decide := func(s *sim) scaler.Decision { return scaler.Decide(p, s.headroomInput(fp, reserve), s.now()) }
		return &keda{
			hpa:  scaler.HPA{MinReplicas: max(min0, 1), MaxReplicas: maxR, Behavior: b},
			poll: ticks(h.PollingInterval.Duration, poll), cooldown: ticks(h.CooldownPeriod.Duration, cooldown),
			sync: sync, push: s.refresh, minRep: min0,
			active: func(s *sim) bool { return decide(s).Replicas > 0 },
			value:  func(s *sim) float64 { return scaler.MetricValue(decide(s)) },
		}
	case PolicyKEDADefault:
		// KEDA's RabbitMQ scaler, mode QueueLength, value 20, over the management API
		// (messages = ready + unacknowledged); no behavior: the HPA's legacy rules.
		return &keda{
			hpa:  scaler.HPA{MinReplicas: max(min0, 1), MaxReplicas: maxR},
			poll: 30, cooldown: 300, sync: sync, minRep: min0,
			active: func(s *sim) bool { return messages(s) > 0 },
			value:  func(s *sim) float64 { return messages(s) / 20 },
		}
	case PolicyKEDATuned:
		kt := sc.Policies.KEDATuned
		v := kt.QueueLength
		if v == 0 {
			v = 1
		}
		b, _ := kt.Behavior.behavior(maxR)
		return &keda{
			hpa:  scaler.HPA{MinReplicas: max(min0, 1), MaxReplicas: maxR, Behavior: b},
			poll: ticks(kt.PollingInterval.Duration, poll), cooldown: ticks(kt.CooldownPeriod.Duration, cooldown),
			sync: sync, minRep: min0,
			active: func(s *sim) bool { return messages(s) > 0 },
			value:  func(s *sim) float64 { return messages(s) / v },
		}
	case PolicyCPUHPA:
		c := sc.Policies.CPUHPA
		target := c.TargetUtilization
		if target == 0 {
			target = 70
		}
		minR := max(c.MinReplicas, min0, 1)
		return &cpuHPA{hpa: scaler.HPA{MinReplicas: min(minR, maxR), MaxReplicas: maxR}, sync: sync, target: target / 100}
	}
	return static{}
}

// initialReplicas is each policy's fleet at t=0.
func (m *model) initialReplicas(policy string) int32 {
	sc := m.sc
	switch policy {
	case PolicyFixed:
		if n := sc.Policies.Fixed.Replicas; n > 0 {
			return n
		}
		return m.maxReplicas
	case PolicyBound:
		return m.boundReplicas
	case PolicyCPUHPA:
		return min(max(sc.Policies.CPUHPA.MinReplicas, sc.Workload.MinReplicas, 1), m.maxReplicas)
	}
	return sc.Workload.MinReplicas
}
