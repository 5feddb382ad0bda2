package capacity

import (
	"testing"
)

const gi = int64(1) << 30

func node(name string, cpu, memGi, pods int64) Node {
	return Node{Name: name, Schedulable: true, Allocatable: Resources{MilliCPU: cpu, Memory: memGi * gi, Pods: pods}}
}

func TestNodeFree(t *testing.T) {
	tests := []struct {
		name    string
		node    Node
		reserve Resources
		want    Resources
	}{
		{
			name: "empty node",
			node: node("a", 4000, 8, 110),
			want: Resources{MilliCPU: 4000, Memory: 8 * gi, Pods: 110},
		},
		{
			name: "requests count",
			node: func() Node {
				n := node("a", 4000, 8, 110)
				n.Requested = Resources{MilliCPU: 1500, Memory: 2 * gi, Pods: 3}
				return n
			}(),
			want: Resources{MilliCPU: 2500, Memory: 6 * gi, Pods: 107},
		},
		{
			name: "usage above requests counts",
			node: func() Node {
				n := node("a", 4000, 8, 110)
				n.Requested = Resources{MilliCPU: 1000, Memory: 2 * gi, Pods: 1}
				n.Used, n.UsedKnown = Resources{MilliCPU: 3000, Memory: 1 * gi}, true
				return n
			}(),
			want: Resources{MilliCPU: 1000, Memory: 6 * gi, Pods: 109},
		},
		{
			name: "unknown usage is ignored",
			node: func() Node {
				n := node("a", 4000, 8, 110)
				n.Used = Resources{MilliCPU: 3000}
				return n
			}(),
			want: Resources{MilliCPU: 4000, Memory: 8 * gi, Pods: 110},
		},
		{
			name:    "reserve and never negative",
			node:    func() Node { n := node("a", 1000, 1, 2); n.Requested.MilliCPU = 900; return n }(),
			reserve: Resources{MilliCPU: 500, Memory: 512 << 20, Pods: 5},
			want:    Resources{MilliCPU: 0, Memory: 512 << 20, Pods: 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.node.Free(tc.reserve); got != tc.want {
				t.Errorf("Free = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFit(t *testing.T) {
	big := node("big", 8000, 16, 110)
	small := node("small", 2000, 4, 110)
	few := node("few", 8000, 16, 3)
	cordoned := node("cordoned", 8000, 16, 110)
	cordoned.Schedulable = false
	gpu := node("gpu", 8000, 16, 110)
	gpu.Labels = map[string]string{"pool": "gpu", "gen": "5"}
	gpu.Taints = []Taint{{Key: "gpu", Value: "true", Effect: EffectNoSchedule}}
	soft := node("soft", 4000, 8, 110)
	soft.Taints = []Taint{{Key: "spot", Effect: EffectPreferNoSchedule}}
	evict := node("evict", 4000, 8, 110)
	evict.Taints = []Taint{{Key: "drain", Effect: EffectNoExecute}}
	labelled := node("labelled", 4000, 8, 110)
	labelled.Labels = map[string]string{"pool": "cpu", "gen": "3"}

	tests := []struct {
		name    string
		nodes   []Node
		fp      Footprint
		c       Constraints
		reserve Resources
		want    int
	}{
		{name: "no nodes", fp: Footprint{MilliCPU: 100}, want: 0},
		{name: "cpu bound", nodes: []Node{big, small}, fp: Footprint{MilliCPU: 1000, Memory: gi / 2}, want: 8 + 2},
		{name: "memory bound", nodes: []Node{big, small}, fp: Footprint{MilliCPU: 100, Memory: 3 * gi}, want: 5 + 1},
		{name: "pod slots bound", nodes: []Node{few}, fp: Footprint{MilliCPU: 100, Memory: gi / 4}, want: 3},
		{name: "zero footprint is bounded by pod slots", nodes: []Node{few, small}, fp: Footprint{}, want: 3 + 110},
		{name: "negative footprint fits nowhere", nodes: []Node{big}, fp: Footprint{MilliCPU: -1}, want: 0},
		{name: "cordoned node is skipped", nodes: []Node{cordoned, small}, fp: Footprint{MilliCPU: 1000}, want: 2},
		{name: "untolerated NoSchedule taint", nodes: []Node{gpu, small}, fp: Footprint{MilliCPU: 1000}, want: 2},
		{
			name: "tolerated by Equal", nodes: []Node{gpu, small}, fp: Footprint{MilliCPU: 1000},
			c:    Constraints{Tolerations: []Toleration{{Key: "gpu", Value: "true", Effect: EffectNoSchedule}}},
			want: 8 + 2,
		},
		{
			name: "Equal with the wrong value does not tolerate", nodes: []Node{gpu}, fp: Footprint{MilliCPU: 1000},
			c:    Constraints{Tolerations: []Toleration{{Key: "gpu", Value: "false"}}},
			want: 0,
		},
		{
			name: "tolerated by Exists without key", nodes: []Node{gpu, evict}, fp: Footprint{MilliCPU: 1000},
			c:    Constraints{Tolerations: []Toleration{{Operator: "Exists"}}},
			want: 8 + 4,
		},
		{name: "PreferNoSchedule does not block", nodes: []Node{soft}, fp: Footprint{MilliCPU: 1000}, want: 4},
		{name: "NoExecute blocks", nodes: []Node{evict}, fp: Footprint{MilliCPU: 1000}, want: 0},
		{
			name: "node selector", nodes: []Node{labelled, small}, fp: Footprint{MilliCPU: 1000},
			c:    Constraints{NodeSelector: map[string]string{"pool": "cpu"}},
			want: 4,
		},
		{
			name: "affinity In", nodes: []Node{labelled, gpu, small}, fp: Footprint{MilliCPU: 1000},
			c: Constraints{
				Required:    []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "pool", Operator: OpIn, Values: []string{"gpu", "cpu"}}}}},
				Tolerations: []Toleration{{Key: "gpu", Operator: "Exists"}},
			},
			want: 4 + 8,
		},
		{
			name: "affinity NotIn matches nodes without the label", nodes: []Node{labelled, small}, fp: Footprint{MilliCPU: 1000},
			c:    Constraints{Required: []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "pool", Operator: OpNotIn, Values: []string{"cpu"}}}}}},
			want: 2,
		},
		{
			name: "affinity Exists and DoesNotExist", nodes: []Node{labelled, small}, fp: Footprint{MilliCPU: 1000},
			c: Constraints{Required: []NodeSelectorTerm{
				{MatchExpressions: []Requirement{{Key: "gen", Operator: OpDoesNotExist}}},
			}},
			want: 2,
		},
		{
			name: "affinity Gt", nodes: []Node{labelled, gpu}, fp: Footprint{MilliCPU: 1000},
			c: Constraints{
				Required:    []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "gen", Operator: OpGt, Values: []string{"4"}}}}},
				Tolerations: []Toleration{{Operator: "Exists"}},
			},
			want: 8,
		},
		{
			name: "affinity Lt", nodes: []Node{labelled, gpu}, fp: Footprint{MilliCPU: 1000},
			c: Constraints{
				Required:    []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "gen", Operator: OpLt, Values: []string{"4"}}}}},
				Tolerations: []Toleration{{Operator: "Exists"}},
			},
			want: 4,
		},
		{
			name: "terms are ORed, expressions ANDed", nodes: []Node{labelled, gpu, small}, fp: Footprint{MilliCPU: 1000},
			c: Constraints{
				Required: []NodeSelectorTerm{
					{MatchExpressions: []Requirement{{Key: "pool", Operator: OpIn, Values: []string{"cpu"}}, {Key: "gen", Operator: OpIn, Values: []string{"9"}}}},
					{MatchFields: []Requirement{{Key: "metadata.name", Operator: OpIn, Values: []string{"small"}}}},
				},
			},
			want: 2,
		},
		{
			name: "empty term matches nothing", nodes: []Node{small}, fp: Footprint{MilliCPU: 1000},
			c:    Constraints{Required: []NodeSelectorTerm{{}}},
			want: 0,
		},
		{
			name: "reserve per node", nodes: []Node{big, small}, fp: Footprint{MilliCPU: 1000},
			reserve: Resources{MilliCPU: 500},
			want:    7 + 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Fit(tc.nodes, tc.fp, tc.c, tc.reserve); got != tc.want {
				t.Errorf("Fit = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		fp      Footprint
		c       Constraints
		wantErr bool
	}{
		{name: "ok", fp: Footprint{MilliCPU: 1, Memory: 1}},
		{name: "negative cpu", fp: Footprint{MilliCPU: -1}, wantErr: true},
		{name: "negative memory", fp: Footprint{Memory: -1}, wantErr: true},
		{name: "unknown operator", c: Constraints{Required: []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "a", Operator: "Like"}}}}}, wantErr: true},
		{name: "Gt not a number", c: Constraints{Required: []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "a", Operator: OpGt, Values: []string{"x"}}}}}}, wantErr: true},
		{name: "In without values", c: Constraints{Required: []NodeSelectorTerm{{MatchExpressions: []Requirement{{Key: "a", Operator: OpIn}}}}}, wantErr: true},
		{name: "Exists toleration with value", c: Constraints{Tolerations: []Toleration{{Key: "a", Operator: "Exists", Value: "b"}}}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fp.Validate()
			if err == nil {
				err = tc.c.Validate()
			}
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// FuzzFit checks the invariants of the fit: never negative, never counts an ineligible node,
// never shrinks when a node has more room, never exceeds any single resource bound.
func FuzzFit(f *testing.F) {
	f.Add(int64(4000), int64(8*gi), int64(110), int64(1000), int64(2*gi), int64(5), int64(500), int64(gi), int64(100), int64(0), true, false)
	f.Add(int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), false, true)
	f.Fuzz(func(t *testing.T, cpu, mem, pods, reqCPU, reqMem, reqPods, fpCPU, fpMem, usedCPU, extra int64, schedulable, tainted bool) {
		n := Node{
			Name: "n", Schedulable: schedulable,
			Allocatable: Resources{MilliCPU: cpu, Memory: mem, Pods: pods},
			Requested:   Resources{MilliCPU: reqCPU, Memory: reqMem, Pods: reqPods},
			Used:        Resources{MilliCPU: usedCPU}, UsedKnown: usedCPU > 0,
		}
		if tainted {
			n.Taints = []Taint{{Key: "k", Effect: EffectNoSchedule}}
		}
		fp := Footprint{MilliCPU: fpCPU, Memory: fpMem}
		got := Fit([]Node{n}, fp, Constraints{}, Resources{})
		if got < 0 {
			t.Fatalf("Fit = %d, negative", got)
		}
		if (!schedulable || tainted) && got != 0 {
			t.Fatalf("Fit = %d on an ineligible node", got)
		}
		free := n.Free(Resources{})
		if free.MilliCPU < 0 || free.Memory < 0 || free.Pods < 0 {
			t.Fatalf("Free = %+v, negative", free)
		}
		if int64(got) > free.Pods {
			t.Fatalf("Fit = %d > free pod slots %d", got, free.Pods)
		}
		if fp.MilliCPU > 0 && int64(got)*fp.MilliCPU > free.MilliCPU {
			t.Fatalf("Fit = %d pods of %dm > free cpu %dm", got, fp.MilliCPU, free.MilliCPU)
		}
		// More allocatable never fits fewer (guard against overflow of the fuzzed sums).
		if extra > 0 && cpu < 1<<50 && mem < 1<<50 && pods < 1<<50 && extra < 1<<50 {
			bigger := n
			bigger.Allocatable = Resources{MilliCPU: cpu + extra, Memory: mem + extra, Pods: pods + extra}
			if more := Fit([]Node{bigger}, fp, Constraints{}, Resources{}); more < got {
				t.Fatalf("Fit with more room = %d < %d", more, got)
			}
		}
	})
}
