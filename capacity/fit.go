package capacity

import (
	"fmt"
	"math"
	"strconv"
)

// Resources is an amount of CPU (millicores), memory (bytes) and pod slots.
type Resources struct {
	MilliCPU int64
	Memory   int64
	Pods     int64
}

// Taint is a node taint (see corev1.Taint).
type Taint struct {
	Key, Value, Effect string
}

// Taint effects.
const (
	EffectNoSchedule       = "NoSchedule"
	EffectPreferNoSchedule = "PreferNoSchedule"
	EffectNoExecute        = "NoExecute"
)

// Toleration is a pod toleration (see corev1.Toleration). Operator "" means Equal.
type Toleration struct {
	Key, Operator, Value, Effect string
}

// Node is what the fit computation knows of one node.
type Node struct {
	Name   string
	Labels map[string]string
	Taints []Taint
	// Schedulable is false when the node is cordoned or not Ready.
	Schedulable bool
	// Allocatable is the node's allocatable CPU, memory and pod count.
	Allocatable Resources
	// Requested is the sum of the requests of the non-terminated pods bound to the node;
	// Requested.Pods is their number.
	Requested Resources
	// Used is live usage (metrics.k8s.io) when UsedKnown; Used.Pods is not used.
	Used      Resources
	UsedKnown bool
}

// Free is the room left on the node: allocatable − max(requested, used) − reserve, per
// resource and never negative. Pods count only against requests.
func (n Node) Free(reserve Resources) Resources {
	cpu, mem := n.Requested.MilliCPU, n.Requested.Memory
	if n.UsedKnown {
		cpu, mem = max(cpu, n.Used.MilliCPU), max(mem, n.Used.Memory)
	}
	return Resources{
		MilliCPU: nonNegative(n.Allocatable.MilliCPU - cpu - reserve.MilliCPU),
		Memory:   nonNegative(n.Allocatable.Memory - mem - reserve.Memory),
		Pods:     nonNegative(n.Allocatable.Pods - n.Requested.Pods - reserve.Pods),
	}
}

func nonNegative(v int64) int64 { return max(v, 0) }

// Footprint is what one more pod of a workload requests.
type Footprint struct {
	MilliCPU int64
	Memory   int64
}

// Validate reports a negative amount. Zero amounts are valid: a pod that requests no CPU is
// bounded by memory and pod slots only.
func (f Footprint) Validate() error {
	if f.MilliCPU < 0 {
		return fmt.Errorf("footprint cpu %dm is negative", f.MilliCPU)
	}
	if f.Memory < 0 {
		return fmt.Errorf("footprint memory %d bytes is negative", f.Memory)
	}
	return nil
}

// Node selector operators, as in corev1.NodeSelectorOperator.
const (
	OpIn           = "In"
	OpNotIn        = "NotIn"
	OpExists       = "Exists"
	OpDoesNotExist = "DoesNotExist"
	OpGt           = "Gt"
	OpLt           = "Lt"
)

// Requirement is one node selector requirement: a label (or, in MatchFields, the field
// metadata.name) compared with values.
type Requirement struct {
	Key      string
	Operator string
	Values   []string
}

// NodeSelectorTerm matches a node when all its requirements match. A term with no
// requirement matches no node (as in Kubernetes).
type NodeSelectorTerm struct {
	MatchExpressions []Requirement
	MatchFields      []Requirement
}

// Constraints are the placement rules of a workload's pod template that the fit honours.
type Constraints struct {
	// NodeSelector labels must all be present with these values.
	NodeSelector map[string]string
	// Required is requiredDuringSchedulingIgnoredDuringExecution node affinity: a node must
	// match at least one term. Empty means no constraint.
	Required    []NodeSelectorTerm
	Tolerations []Toleration
}

// Validate reports operators and values Kubernetes would reject.
func (c Constraints) Validate() error {
	for i, t := range c.Required {
		for _, r := range append(append([]Requirement(nil), t.MatchExpressions...), t.MatchFields...) {
			switch r.Operator {
			case OpIn, OpNotIn:
				if len(r.Values) == 0 {
					return fmt.Errorf("node affinity term %d: %s %q needs values", i, r.Operator, r.Key)
				}
			case OpExists, OpDoesNotExist:
				if len(r.Values) != 0 {
					return fmt.Errorf("node affinity term %d: %s %q takes no values", i, r.Operator, r.Key)
				}
			case OpGt, OpLt:
				if len(r.Values) != 1 {
					return fmt.Errorf("node affinity term %d: %s %q needs one value", i, r.Operator, r.Key)
				}
				if _, err := strconv.ParseInt(r.Values[0], 10, 64); err != nil {
					return fmt.Errorf("node affinity term %d: %s %q value %q is not an integer", i, r.Operator, r.Key, r.Values[0])
				}
			default:
				return fmt.Errorf("node affinity term %d: unknown operator %q", i, r.Operator)
			}
		}
	}
	for _, t := range c.Tolerations {
		switch t.Operator {
		case "", "Equal":
		case "Exists":
			if t.Value != "" {
				return fmt.Errorf("toleration %q: operator Exists takes no value, got %q", t.Key, t.Value)
			}
		default:
			return fmt.Errorf("toleration %q: unknown operator %q", t.Key, t.Operator)
		}
	}
	return nil
}

// Eligible reports whether a pod with constraints c may be placed on n at all: the node is
// schedulable, matches the node selector and required affinity, and every NoSchedule or
// NoExecute taint is tolerated.
func (c Constraints) Eligible(n Node) bool {
	m := c.matcher()
	return m.eligible(&n)
}

// matcher is Constraints prepared for many nodes: the node selector as a slice, since
// ranging over a map costs more than the rest of a node's check.
type matcher struct {
	selector    []labelPair
	required    []NodeSelectorTerm
	tolerations []Toleration
}

type labelPair struct{ key, value string }

func (c Constraints) matcher() matcher {
	m := matcher{required: c.Required, tolerations: c.Tolerations}
	for k, v := range c.NodeSelector {
		m.selector = append(m.selector, labelPair{k, v})
	}
	return m
}

func (m *matcher) eligible(n *Node) bool {
	if !n.Schedulable {
		return false
	}
	for _, p := range m.selector {
		if got, ok := n.Labels[p.key]; !ok || got != p.value {
			return false
		}
	}
	if len(m.required) > 0 {
		matched := false
		for i := range m.required {
			if m.required[i].matches(n) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	for _, t := range n.Taints {
		if t.Effect != EffectNoSchedule && t.Effect != EffectNoExecute {
			continue
		}
		if !tolerated(m.tolerations, t) {
			return false
		}
	}
	return true
}

func tolerated(ts []Toleration, taint Taint) bool {
	for _, t := range ts {
		if t.Effect != "" && t.Effect != taint.Effect {
			continue
		}
		if t.Key != "" && t.Key != taint.Key {
			continue
		}
		switch t.Operator {
		case "Exists":
			return true
		case "", "Equal":
			if t.Value == taint.Value {
				return true
			}
		}
	}
	return false
}

func (t NodeSelectorTerm) matches(n *Node) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for _, r := range t.MatchExpressions {
		v, ok := n.Labels[r.Key]
		if !r.matches(v, ok) {
			return false
		}
	}
	for _, r := range t.MatchFields {
		if r.Key != "metadata.name" || !r.matches(n.Name, true) {
			return false
		}
	}
	return true
}

func (r Requirement) matches(v string, present bool) bool {
	switch r.Operator {
	case OpIn:
		return present && contains(r.Values, v)
	case OpNotIn:
		return !present || !contains(r.Values, v)
	case OpExists:
		return present
	case OpDoesNotExist:
		return !present
	case OpGt, OpLt:
		if !present || len(r.Values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == OpGt {
			return got > want
		}
		return got < want
	}
	return false
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// FitNode is how many more pods of footprint fp fit on n: min(⌊freeCPU/cpu⌋, ⌊freeMem/mem⌋,
// freePods), 0 when n is not eligible. A zero amount in fp does not limit.
func FitNode(n Node, fp Footprint, c Constraints, reserve Resources) int {
	if fp.Validate() != nil {
		return 0
	}
	m := c.matcher()
	return fitNode(&n, fp, &m, reserve)
}

// fitNode is FitNode for a valid footprint and prepared constraints.
func fitNode(n *Node, fp Footprint, m *matcher, reserve Resources) int {
	if !m.eligible(n) {
		return 0
	}
	free := n.Free(reserve)
	k := free.Pods
	if fp.MilliCPU > 0 {
		k = min(k, free.MilliCPU/fp.MilliCPU)
	}
	if fp.Memory > 0 {
		k = min(k, free.Memory/fp.Memory)
	}
	if k > math.MaxInt32 {
		k = math.MaxInt32
	}
	return int(k)
}

// Fit is how many more pods of footprint fp the nodes can place, bin-packed per node: the sum
// of FitNode over nodes. An invalid footprint (see Footprint.Validate) fits nowhere.
func Fit(nodes []Node, fp Footprint, c Constraints, reserve Resources) int {
	if fp.Validate() != nil {
		return 0
	}
	m := c.matcher()
	total := 0
	for i := range nodes {
		total += fitNode(&nodes[i], fp, &m, reserve)
	}
	return total
}
