package scaler

import (
	"fmt"
	"math"
	"time"
)

// The value the server returns to KEDA, and what the Kubernetes HPA does with it.
//
// KEDA turns the external metric into an HPA metric of type AverageValue with the target the
// server gives (1). For such a metric the HPA computes, at each sync (every 15 s by default):
//
//	usageRatio = value / (target × currentReplicas)
//	desired    = ceil(value / target)   unless usageRatio is within the tolerance band
//
// then stabilizes that recommendation over a window and limits the rate of change. The
// functions below reproduce those steps (k8s.io/kubernetes pkg/controller/podautoscaler:
// ReplicaCalculator.GetExternalPerPodMetricReplicas in replica_calculator.go;
// HorizontalController.normalizeDesiredReplicas, stabilizeRecommendation,
// normalizeDesiredReplicasWithBehaviors, stabilizeRecommendationWithBehaviors,
// convertDesiredReplicasWithBehaviorRate, calculateScaleUpLimitWithScalingRules and
// calculateScaleDownLimitWithBehaviors in horizontal.go), with time passed in.

// MetricTarget is the AverageValue target the server asks for in GetMetricSpec.
const MetricTarget = 1.0

// MetricValue is the value to return to KEDA for a decision: the desired replica count. With
// target 1 the HPA's ceil(value / target) is exactly the decision, outside the tolerance band.
func MetricValue(d Decision) float64 { return float64(d.Replicas) }

// DefaultTolerance is the HPA's default tolerance (--horizontal-pod-autoscaler-tolerance).
const DefaultTolerance = 0.1

// Scaling policy types and select policies, as in autoscaling/v2.
const (
	PodsPolicy    = "Pods"
	PercentPolicy = "Percent"

	SelectMax      = "Max"
	SelectMin      = "Min"
	SelectDisabled = "Disabled"
)

// ScalingPolicy is one autoscaling/v2 HPAScalingPolicy.
type ScalingPolicy struct {
	Type   string // PodsPolicy or PercentPolicy
	Value  int32
	Period time.Duration
}

// ScalingRules is one direction of autoscaling/v2 HPAScalingRules. Nil pointers take the
// Kubernetes defaults for that direction (see DefaultScaleUp, DefaultScaleDown).
type ScalingRules struct {
	StabilizationWindow *time.Duration
	SelectPolicy        string // "" means SelectMax
	Policies            []ScalingPolicy
	// Tolerance for this direction (Kubernetes ≥ 1.33); nil means the controller default.
	Tolerance *float64
}

// Behavior is autoscaling/v2 HorizontalPodAutoscalerBehavior.
type Behavior struct {
	ScaleUp   *ScalingRules
	ScaleDown *ScalingRules
}

// DefaultScaleUp is what the API server fills in for an unset scaleUp in a set behavior:
// no stabilization, at most +4 pods or +100% per 15 s, whichever is more.
func DefaultScaleUp() ScalingRules {
	w := time.Duration(0)
	return ScalingRules{StabilizationWindow: &w, SelectPolicy: SelectMax, Policies: []ScalingPolicy{
		{Type: PodsPolicy, Value: 4, Period: 15 * time.Second},
		{Type: PercentPolicy, Value: 100, Period: 15 * time.Second},
	}}
}

// DefaultScaleDown is what the API server fills in for an unset scaleDown in a set behavior:
// a 300 s stabilization window and up to 100% per 15 s.
func DefaultScaleDown() ScalingRules {
	w := 300 * time.Second
	return ScalingRules{StabilizationWindow: &w, SelectPolicy: SelectMax, Policies: []ScalingPolicy{
		{Type: PercentPolicy, Value: 100, Period: 15 * time.Second},
	}}
}

// ExactBehavior is the behavior that lets the final replica count follow the decision at
// every sync for targets up to maxReplicas: no stabilization either way, a Pods policy of
// maxReplicas per period, and zero tolerance (which needs Kubernetes ≥ 1.33).
func ExactBehavior(maxReplicas int32) Behavior {
	zero, tol := time.Duration(0), 0.0
	rules := func() *ScalingRules {
		return &ScalingRules{StabilizationWindow: &zero, SelectPolicy: SelectMax, Tolerance: &tol,
			Policies: []ScalingPolicy{{Type: PodsPolicy, Value: maxReplicas, Period: 15 * time.Second}}}
	}
	return Behavior{ScaleUp: rules(), ScaleDown: rules()}
}

// HPA is the configuration of one HorizontalPodAutoscaler as KEDA creates it.
type HPA struct {
	MinReplicas int32 // KEDA sets max(minReplicaCount, 1)
	MaxReplicas int32
	// Tolerance is the controller-wide tolerance; nil means DefaultTolerance.
	Tolerance *float64
	// Behavior nil selects the controller's legacy rules: at most max(2 × current, 4) per
	// sync and a 300 s scale-down stabilization window.
	Behavior *Behavior
	// DownscaleWindow is the legacy stabilization window (--horizontal-pod-autoscaler-
	// downscale-stabilization); zero means 300 s.
	DownscaleWindow time.Duration
}

// Validate reports the first invalid field.
func (h HPA) Validate() error {
	if h.MaxReplicas < 1 {
		return fmt.Errorf("hpa maxReplicas %d: must be at least 1", h.MaxReplicas)
	}
	if h.MinReplicas < 0 || h.MinReplicas > h.MaxReplicas {
		return fmt.Errorf("hpa minReplicas %d: must be between 0 and maxReplicas %d", h.MinReplicas, h.MaxReplicas)
	}
	if h.Tolerance != nil && (*h.Tolerance < 0 || math.IsNaN(*h.Tolerance)) {
		return fmt.Errorf("hpa tolerance %v: must not be negative", *h.Tolerance)
	}
	if h.Behavior != nil {
		for dir, r := range map[string]*ScalingRules{"scaleUp": h.Behavior.ScaleUp, "scaleDown": h.Behavior.ScaleDown} {
			if r == nil {
				continue
			}
			switch r.SelectPolicy {
			case "", SelectMax, SelectMin, SelectDisabled:
			default:
				return fmt.Errorf("hpa %s selectPolicy %q: must be Max, Min or Disabled", dir, r.SelectPolicy)
			}
			for _, p := range r.Policies {
				if (p.Type != PodsPolicy && p.Type != PercentPolicy) || p.Value <= 0 || p.Period <= 0 {
					return fmt.Errorf("hpa %s policy {%s %d %s}: want type Pods or Percent, value > 0, period > 0", dir, p.Type, p.Value, p.Period)
				}
			}
		}
	}
	return nil
}

// HPAState is what the controller remembers between syncs for one HPA: recent
// recommendations and scale events. The zero value is a fresh HPA.
type HPAState struct {
	recs       []stamped
	upEvents   []stamped
	downEvents []stamped
}

type stamped struct {
	n  int32
	at time.Time
}

// Sync is one HPA reconcile: given the target's current replicas and the metric value (the sum
// over the external metric, i.e. what GetMetrics returned) at target MetricTarget, it returns
// the replica count the HPA writes, and records its history in st.
func (h HPA) Sync(st *HPAState, current int32, value float64, now time.Time) int32 {
	var desired int32
	switch {
	case current == 0 && h.MinReplicas != 0:
		return 0 // "scaling is disabled since the replica count of the target is zero"
	case current > h.MaxReplicas:
		desired = h.MaxReplicas
	case current < h.MinReplicas:
		desired = h.MinReplicas
	default:
		proposal := h.proposal(current, value)
		if h.Behavior == nil {
			desired = h.normalizeLegacy(st, current, proposal, now)
		} else {
			desired = h.normalizeWithBehavior(st, current, proposal, now)
		}
	}
	if desired != current {
		h.recordScale(st, current, desired, now)
	}
	return desired
}

// proposal is GetExternalPerPodMetricReplicas: ceil(value/target) outside the tolerance band.
func (h HPA) proposal(current int32, value float64) int32 {
	// KEDA reports the value as a milli-quantity; the HPA works in milli-units.
	usage := math.Ceil(value * 1000)
	target := MetricTarget * 1000
	ratio := usage / (target * float64(current))
	up, down := h.tolerances()
	if 1-down <= ratio && ratio <= 1+up {
		return current
	}
	n := math.Ceil(usage / target)
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n)
}

// WithinTolerance reports whether the HPA would ignore a change from current to desired
// replicas because the usage ratio desired/current is inside the tolerance band. When it does,
// the final count cannot equal the decision until the difference grows.
func (h HPA) WithinTolerance(current, desired int32) bool {
	if current == 0 || current == desired {
		return current == desired
	}
	return h.proposal(current, float64(desired)) == current
}

func (h HPA) tolerances() (up, down float64) {
	up, down = DefaultTolerance, DefaultTolerance
	if h.Tolerance != nil {
		up, down = *h.Tolerance, *h.Tolerance
	}
	if h.Behavior != nil {
		if r := h.Behavior.ScaleUp; r != nil && r.Tolerance != nil {
			up = *r.Tolerance
		}
		if r := h.Behavior.ScaleDown; r != nil && r.Tolerance != nil {
			down = *r.Tolerance
		}
	}
	return up, down
}

// normalizeLegacy is normalizeDesiredReplicas: the maximum recommendation of the downscale
// window, then min/max and the scale-up limit max(2 × current, 4).
func (h HPA) normalizeLegacy(st *HPAState, current, proposal int32, now time.Time) int32 {
	window := h.DownscaleWindow
	if window == 0 {
		window = 300 * time.Second
	}
	cutoff := now.Add(-window)
	stabilized := proposal
	old := -1
	for i, r := range st.recs {
		if r.at.Before(cutoff) {
			old = i
		} else if r.n > stabilized {
			stabilized = r.n
		}
	}
	if old >= 0 {
		st.recs[old] = stamped{proposal, now}
	} else {
		st.recs = append(st.recs, stamped{proposal, now})
	}
	// convertDesiredReplicasWithRules
	scaleUpLimit := max(2*current, 4)
	maxAllowed := min(h.MaxReplicas, scaleUpLimit)
	minAllowed := max(h.MinReplicas, 1)
	switch {
	case stabilized < minAllowed:
		return minAllowed
	case stabilized > maxAllowed:
		return maxAllowed
	}
	return stabilized
}

func (h HPA) rules() (up, down ScalingRules) {
	up, down = DefaultScaleUp(), DefaultScaleDown()
	if b := h.Behavior; b != nil {
		if b.ScaleUp != nil {
			up = mergeRules(*b.ScaleUp, up)
		}
		if b.ScaleDown != nil {
			down = mergeRules(*b.ScaleDown, down)
		}
	}
	return up, down
}

// mergeRules fills unset fields of r from def, as the API server's defaulting does.
func mergeRules(r, def ScalingRules) ScalingRules {
	if r.StabilizationWindow == nil {
		r.StabilizationWindow = def.StabilizationWindow
	}
	if r.SelectPolicy == "" {
		r.SelectPolicy = SelectMax
	}
	if len(r.Policies) == 0 {
		r.Policies = def.Policies
	}
	return r
}

// normalizeWithBehavior is normalizeDesiredReplicasWithBehaviors.
func (h HPA) normalizeWithBehavior(st *HPAState, current, proposal int32, now time.Time) int32 {
	up, down := h.rules()
	upCutoff := now.Add(-*up.StabilizationWindow)
	downCutoff := now.Add(-*down.StabilizationWindow)
	upRec, downRec := proposal, proposal
	old := -1
	for i, r := range st.recs {
		if r.at.After(upCutoff) {
			upRec = min(upRec, r.n)
		}
		if r.at.After(downCutoff) {
			downRec = max(downRec, r.n)
		}
		if r.at.Before(upCutoff) && r.at.Before(downCutoff) {
			old = i
		}
	}
	stabilized := current
	if stabilized < upRec {
		stabilized = upRec
	}
	if stabilized > downRec {
		stabilized = downRec
	}
	if old >= 0 {
		st.recs[old] = stamped{proposal, now}
	} else {
		st.recs = append(st.recs, stamped{proposal, now})
	}
	// convertDesiredReplicasWithBehaviorRate
	switch {
	case stabilized > current:
		limit := scaleUpLimit(current, st.upEvents, up, now)
		limit = max(limit, current)
		allowed := min(h.MaxReplicas, limit)
		return min(stabilized, allowed)
	case stabilized < current:
		limit := scaleDownLimit(current, st.downEvents, down, now)
		limit = min(limit, current)
		allowed := max(h.MinReplicas, limit)
		return max(stabilized, allowed)
	}
	return stabilized
}

func changeInPeriod(period time.Duration, events []stamped, now time.Time) int32 {
	cutoff := now.Add(-period)
	var n int32
	for _, e := range events {
		if e.at.After(cutoff) {
			n += e.n
		}
	}
	return n
}

func scaleUpLimit(current int32, events []stamped, r ScalingRules, now time.Time) int32 {
	if r.SelectPolicy == SelectDisabled {
		return current
	}
	pick, result := maxI32, int32(math.MinInt32)
	if r.SelectPolicy == SelectMin {
		pick, result = minI32, math.MaxInt32
	}
	for _, p := range r.Policies {
		start := current - changeInPeriod(p.Period, events, now)
		var proposed int32
		if p.Type == PodsPolicy {
			proposed = start + p.Value
		} else {
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		result = pick(result, proposed)
	}
	return result
}

func scaleDownLimit(current int32, events []stamped, r ScalingRules, now time.Time) int32 {
	if r.SelectPolicy == SelectDisabled {
		return current
	}
	pick, result := minI32, int32(math.MaxInt32)
	if r.SelectPolicy == SelectMin {
		pick, result = maxI32, math.MinInt32
	}
	for _, p := range r.Policies {
		start := current + changeInPeriod(p.Period, events, now)
		var proposed int32
		if p.Type == PodsPolicy {
			proposed = start - p.Value
		} else {
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return result
}

func minI32(a, b int32) int32 { return min(a, b) }
func maxI32(a, b int32) int32 { return max(a, b) }

// recordScale is storeScaleEvent: remember the change for the rate policies, forgetting
// events older than the longest policy period.
func (h HPA) recordScale(st *HPAState, prev, next int32, now time.Time) {
	if h.Behavior == nil {
		return
	}
	up, down := h.rules()
	longest := time.Duration(0)
	for _, p := range append(append([]ScalingPolicy(nil), up.Policies...), down.Policies...) {
		longest = max(longest, p.Period)
	}
	prune := func(ev []stamped) []stamped {
		out := ev[:0]
		for _, e := range ev {
			if !e.at.Before(now.Add(-longest)) {
				out = append(out, e)
			}
		}
		return out
	}
	if next > prev {
		st.upEvents = append(prune(st.upEvents), stamped{next - prev, now})
	} else {
		st.downEvents = append(prune(st.downEvents), stamped{prev - next, now})
	}
}
