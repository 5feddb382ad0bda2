package server

import (
	"errors"
	"fmt"
	"slices"

	autoscalingv2 "k8s.io/api/autoscaling/v2"

	"github.com/headroom-autoscaler/headroom/capacity"
)

// Finding is one problem in a ScaledObject that points at this scaler: an error (KEDA or the
// scaler will refuse it, or the HPA will not run the answer) or a warning (it works, but the
// replica count will not follow the answer as the operator likely expects).
type Finding struct {
	// Field is the path of the offending field, e.g. spec.triggers[0].metadata.stepPods.
	Field   string
	Error   bool
	Message string
}

func (f Finding) String() string {
	sev := "warning"
	if f.Error {
		sev = "error"
	}
	return fmt.Sprintf("%s: %s: %s", sev, f.Field, f.Message)
}

// CheckOptions says which scaler a check is for, as `scaler serve` is configured.
type CheckOptions struct {
	// Brokers are the configured broker names; empty: the names are not checked.
	Brokers []string
	// Addresses are the scalerAddress values of this scaler (--scaler-address); empty:
	// every external trigger that names a queue points at it, as in `scaler serve`.
	Addresses []string
}

// CheckScaledObject checks, without a cluster, what the scaler and the HPA will make of a
// ScaledObject (as capacity.ParseScaledObject reads it): the metadata of each trigger that
// points at this scaler, as the scaler parses it, and HPAFindings. served is how many
// triggers point at this scaler; with none there are no findings.
func CheckScaledObject(so capacity.ScaledObject, o CheckOptions) (findings []Finding, served int) {
	idx := servedTriggers(so, o.Addresses)
	if len(idx) == 0 {
		return nil, 0
	}
	for _, i := range idx {
		t := so.Triggers[i]
		at := fmt.Sprintf("spec.triggers[%d]", i)
		brokers := o.Brokers
		if len(brokers) == 0 {
			brokers = []string{t.Metadata[KeyBroker]} // not checked
		}
		if _, err := ParseConfig(t.Metadata, brokers); err != nil {
			field := at + ".metadata"
			var ie *InvalidError
			if errors.As(err, &ie) && ie.Key != "policy" {
				field += "." + ie.Key
			}
			findings = append(findings, Finding{Field: field, Error: true, Message: err.Error()})
		}
		if t.Metadata["scalerAddress"] == "" {
			findings = append(findings, Finding{Field: at + ".metadata.scalerAddress", Error: true, Message: "not set: KEDA cannot reach the scaler"})
		}
	}
	return append(findings, HPAFindings(so, idx)...), len(idx)
}

// HPAFindings lists what keeps the HPA from running the answer of the triggers ours (indices
// into so.Triggers) as it is: their metricType, other triggers beside them, and the HPA
// behavior (stabilization windows, the tolerance band, rate policies smaller than
// maxReplicaCount). The scaler serves them on its decisions page, from the cluster's
// ScaledObjects, so that a replica count that lags the answer has its reason shown.
func HPAFindings(so capacity.ScaledObject, ours []int) []Finding {
	var out []Finding
	add := func(isErr bool, field, format string, args ...any) {
		out = append(out, Finding{Field: field, Error: isErr, Message: fmt.Sprintf(format, args...)})
	}
	for i, t := range so.Triggers {
		at := fmt.Sprintf("spec.triggers[%d]", i)
		if !slices.Contains(ours, i) {
			add(false, at, "a %s trigger beside headroom's: the HPA runs the largest count of all triggers, which can be more than the cluster fits (Pending pods) or take busy workers down", t.Type)
			continue
		}
		if t.MetricType != "" && t.MetricType != "AverageValue" {
			add(true, at+".metricType", "%q: want AverageValue (or unset): the target is 1 per replica, so the HPA runs the answer; with %s it runs something else (with Value, the current count times the answer)", t.MetricType, t.MetricType)
		}
		if t.Type == capacity.TriggerExternal {
			add(false, at+".type", "external: a scale from zero waits for KEDA's next poll (pollingInterval); external-push starts the first worker within one broker refresh")
		}
	}
	const at = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
	b := so.Behavior
	switch {
	case so.BehaviorErr != "":
		add(true, at, "unreadable: %s", so.BehaviorErr)
		return out
	case b == nil:
		add(false, at, "not set: the HPA grows to at most max(2 × current, 4) replicas per 15 s, holds a scale-down for 300 s and ignores changes within 10%%, so the replica count lags the answer")
		return out
	}
	for _, dir := range []struct {
		name   string
		rules  *autoscalingv2.HPAScalingRules
		window int32  // the HPA's default stabilization window
		keeps  string // which answer of the window the HPA keeps
		unset  string
	}{
		{"scaleUp", b.ScaleUp, 0, "lowest", "not set: the HPA grows to at most max(2 × current, 4) replicas per 15 s"},
		{"scaleDown", b.ScaleDown, 300, "highest", "not set: the HPA holds a scale-down for 300 s after the answer drops"},
	} {
		field := at + "." + dir.name
		r := dir.rules
		if r == nil {
			add(false, field, "%s", dir.unset)
			continue
		}
		w := dir.window
		if r.StabilizationWindowSeconds != nil {
			w = *r.StabilizationWindowSeconds
		}
		if w != 0 {
			add(false, field+".stabilizationWindowSeconds", "%d s: the HPA keeps the %s answer of the last %d s; 0 runs each answer when it comes", w, dir.keeps, w)
		}
		switch {
		case r.Tolerance == nil:
			add(false, field+".tolerance", "not set: the HPA ignores changes within 10%% of the current count; \"0\" (Kubernetes >= 1.33) runs every answer")
		case !r.Tolerance.IsZero():
			add(false, field+".tolerance", "%g: the HPA ignores changes within that fraction of the current count; \"0\" runs every answer", r.Tolerance.AsApproximateFloat64())
		}
		sel := autoscalingv2.MaxChangePolicySelect
		if r.SelectPolicy != nil {
			sel = *r.SelectPolicy
		}
		if sel == autoscalingv2.DisabledPolicySelect {
			add(false, field+".selectPolicy", "Disabled: the HPA never takes this direction, whatever the answer")
			continue
		}
		if len(r.Policies) == 0 {
			continue // the HPA's defaults: Pods 4 and Percent 100 up, Percent 100 down, per 15 s
		}
		if allowed := podsAllowed(r.Policies, sel == autoscalingv2.MinChangePolicySelect); allowed < so.MaxReplicas {
			add(false, field+".policies", "allow %s per period, less than maxReplicaCount (%d): a larger step is cut; a Pods policy of at least %d (selectPolicy Max) runs every answer", describeAllowance(allowed), so.MaxReplicas, so.MaxReplicas)
		}
	}
	return out
}

// podsAllowed is how many pods a direction's policies surely allow per period, whatever the
// current count: a Pods policy allows its value; a Percent policy, which depends on the
// current count, is counted as allowing none (it allows none from zero). With min, the
// policies' smallest allowance applies (selectPolicy Min), else the largest (Max, the
// default).
func podsAllowed(policies []autoscalingv2.HPAScalingPolicy, min bool) int32 {
	var allowed int32 = -1
	for _, p := range policies {
		var n int32
		if p.Type == autoscalingv2.PodsScalingPolicy {
			n = p.Value
		}
		switch {
		case allowed < 0:
			allowed = n
		case min && n < allowed, !min && n > allowed:
			allowed = n
		}
	}
	return max(allowed, 0)
}

func describeAllowance(n int32) string {
	if n == 0 {
		return "only a percentage of the current count"
	}
	return fmt.Sprintf("%d pods", n)
}
