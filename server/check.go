package server

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
// ScaledObject: the metadata of each trigger that points at this scaler (as the scaler
// parses it), and the fields that decide whether the HPA runs the answer as it is: the
// trigger's metricType, the other triggers, and the HPA behavior. served is how many
// triggers point at this scaler; with none there are no findings.
func CheckScaledObject(u *unstructured.Unstructured, o CheckOptions) (findings []Finding, served int) {
	so := capacity.ParseScaledObject(u)
	idx := servedTriggers(so, o.Addresses)
	if len(idx) == 0 {
		return nil, 0
	}
	add := func(isErr bool, field, format string, args ...any) {
		findings = append(findings, Finding{Field: field, Error: isErr, Message: fmt.Sprintf(format, args...)})
	}
	ours := map[int]bool{}
	for _, i := range idx {
		ours[i] = true
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
			add(true, field, "%v", err)
		}
		if t.Metadata["scalerAddress"] == "" {
			add(true, at+".metadata.scalerAddress", "not set: KEDA cannot reach the scaler")
		}
		if t.MetricType != "" && t.MetricType != "AverageValue" {
			add(true, at+".metricType", "%q: want AverageValue (or unset): the target is 1 per replica, so the HPA runs the answer; with %s it runs something else (with Value, the current count times the answer)", t.MetricType, t.MetricType)
		}
		if t.Type == capacity.TriggerExternal {
			add(false, at+".type", "external: a scale from zero waits for KEDA's next poll (pollingInterval); external-push starts the first worker within one broker refresh")
		}
	}
	for i, t := range so.Triggers {
		if !ours[i] {
			add(false, fmt.Sprintf("spec.triggers[%d]", i), "a %s trigger beside headroom's: the HPA runs the largest count of all triggers, which can be more than the cluster fits (Pending pods) or take busy workers down", t.Type)
		}
	}
	findings = append(findings, checkBehavior(u, so.MaxReplicas)...)
	return findings, len(idx)
}

// checkBehavior warns where the HPA's behavior keeps the replica count from the answer:
// stabilization windows, a tolerance band, or rate policies smaller than maxReplicaCount.
func checkBehavior(u *unstructured.Unstructured, maxReplicas int32) []Finding {
	var out []Finding
	warn := func(field, format string, args ...any) {
		out = append(out, Finding{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	const at = "spec.advanced.horizontalPodAutoscalerConfig.behavior"
	b, ok, _ := unstructured.NestedMap(u.Object, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior")
	if !ok {
		warn(at, "not set: the HPA grows to at most max(2 × current, 4) replicas per 15 s, holds a scale-down for 300 s and ignores changes within 10%%, so the replica count lags the answer")
		return out
	}
	for _, dir := range []struct {
		name       string
		window     int64 // the HPA's default stabilization window
		consequent string
	}{
		{"scaleUp", 0, "the HPA grows to at most max(2 × current, 4) replicas per 15 s"},
		{"scaleDown", 300, "the HPA removes pods only at its default rate"},
	} {
		field := at + "." + dir.name
		r, ok := b[dir.name].(map[string]any)
		if !ok {
			if dir.window != 0 {
				warn(field, "not set: the HPA holds a scale-down for %d s after the answer drops", dir.window)
			} else {
				warn(field, "not set: %s", dir.consequent)
			}
			continue
		}
		w, set, _ := unstructured.NestedInt64(r, "stabilizationWindowSeconds")
		if !set {
			w = dir.window
		}
		if w != 0 {
			warn(field+".stabilizationWindowSeconds", "%d s: the HPA keeps the %s answer of the last %d s; 0 runs each answer when it comes", w, map[string]string{"scaleUp": "lowest", "scaleDown": "highest"}[dir.name], w)
		}
		if tol, set := r["tolerance"]; !set {
			warn(field+".tolerance", "not set: the HPA ignores changes within 10%% of the current count; \"0\" (Kubernetes >= 1.33) runs every answer")
		} else if q, err := resource.ParseQuantity(fmt.Sprint(tol)); err != nil || !q.IsZero() {
			warn(field+".tolerance", "%v: the HPA ignores changes within that fraction of the current count; \"0\" runs every answer", tol)
		}
		sel, _, _ := unstructured.NestedString(r, "selectPolicy")
		if sel == "Disabled" {
			warn(field+".selectPolicy", "Disabled: the HPA never takes this direction, whatever the answer")
			continue
		}
		policies, _, _ := unstructured.NestedSlice(r, "policies")
		if len(policies) == 0 {
			continue // the HPA's defaults: Pods 4 and Percent 100 up, Percent 100 down, per 15 s
		}
		if allowed := podsAllowed(policies, sel == "Min"); allowed < int64(maxReplicas) {
			warn(field+".policies", "allow %s per period, less than maxReplicaCount (%d): a larger step is cut; a Pods policy of at least %d (selectPolicy Max) runs every answer", describeAllowance(allowed), maxReplicas, maxReplicas)
		}
	}
	return out
}

// podsAllowed is how many pods a direction's policies surely allow per period, whatever the
// current count: a Pods policy allows its value; a Percent policy, which depends on the
// current count, is counted as allowing none (it allows none from zero). With min, the
// policies' smallest allowance applies (selectPolicy Min), else the largest (Max, the
// default).
func podsAllowed(policies []any, min bool) int64 {
	var allowed int64 = -1
	for _, p := range policies {
		m, _ := p.(map[string]any)
		var n int64
		if typ, _, _ := unstructured.NestedString(m, "type"); typ == "Pods" {
			n, _, _ = unstructured.NestedInt64(m, "value")
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

func describeAllowance(n int64) string {
	if n == 0 {
		return "only a percentage of the current count"
	}
	return fmt.Sprintf("%d pods", n)
}
