package scaler

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const sync = 15 * time.Second

// run feeds the same metric value to the HPA at each sync and returns the replica counts.
func run(h HPA, start int32, values []float64) []int32 {
	var st HPAState
	cur := start
	out := make([]int32, 0, len(values))
	for i, v := range values {
		cur = h.Sync(&st, cur, v, t0.Add(time.Duration(i)*sync))
		out = append(out, cur)
	}
	return out
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestHPALegacyRamp(t *testing.T) {
	// No behavior: at most max(2 × current, 4) per sync — the 1 → 4 → 8 → 16 ramp the
	// Kubernetes documentation describes, seen on the real chain as 1→4→8→16→20.
	h := HPA{MinReplicas: 1, MaxReplicas: 20}
	got := run(h, 1, repeat(40, 6))
	if want := []int32{4, 8, 16, 20, 20, 20}; !slices.Equal(got, want) {
		t.Errorf("ramp %v, want %v", got, want)
	}
}

func TestHPALegacyScaleDownStabilization(t *testing.T) {
	// After the queue drains the HPA keeps the highest recommendation of the last 300 s.
	h := HPA{MinReplicas: 1, MaxReplicas: 20}
	values := append(repeat(20, 2), repeat(1, 30)...)
	got := run(h, 20, values)
	for i := 0; i < 2+300/15; i++ {
		if got[i] != 20 {
			t.Fatalf("sync %d (t=%s): %d replicas, want 20 held during the window; all %v", i, time.Duration(i)*sync, got[i], got)
		}
	}
	if got[len(got)-1] != 1 {
		t.Errorf("after the window: %d replicas, want 1; all %v", got[len(got)-1], got)
	}
}

func TestHPATolerance(t *testing.T) {
	h := HPA{MinReplicas: 1, MaxReplicas: 100}
	tests := []struct {
		name    string
		h       HPA
		current int32
		value   float64
		want    int32
	}{
		{name: "inside the 10% band: no change", h: h, current: 20, value: 22, want: 20},
		{name: "inside the band downwards", h: h, current: 20, value: 18, want: 20},
		{name: "outside the band", h: h, current: 20, value: 23, want: 23},
		{name: "zero tolerance follows every change", h: HPA{MinReplicas: 1, MaxReplicas: 100, Tolerance: ptr(0.0)}, current: 20, value: 21, want: 21},
		{name: "per-direction tolerance (1.33)", h: HPA{MinReplicas: 1, MaxReplicas: 100, Behavior: &Behavior{ScaleUp: &ScalingRules{Tolerance: ptr(0.0)}}}, current: 20, value: 21, want: 21},
		{name: "target at zero: the HPA does not act", h: h, current: 0, value: 5, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st HPAState
			if got := tc.h.Sync(&st, tc.current, tc.value, t0); got != tc.want {
				t.Errorf("Sync(%d, %v) = %d, want %d", tc.current, tc.value, got, tc.want)
			}
		})
	}
	if !h.WithinTolerance(20, 21) || h.WithinTolerance(20, 23) || h.WithinTolerance(0, 1) {
		t.Error("WithinTolerance disagrees with Sync")
	}
}

func TestHPADefaultBehavior(t *testing.T) {
	// A set but empty behavior takes the API defaults: up by max(+4, +100%) per 15 s, no
	// up-stabilization; down stabilized 300 s.
	h := HPA{MinReplicas: 1, MaxReplicas: 50, Behavior: &Behavior{}}
	got := run(h, 1, repeat(40, 5))
	if want := []int32{5, 10, 20, 40, 40}; !slices.Equal(got, want) {
		t.Errorf("ramp %v, want %v", got, want)
	}
}

func TestHPAPercentScaleDown(t *testing.T) {
	// keda-tuned style: scale down at most 10% per 60 s, no stabilization.
	w := time.Duration(0)
	h := HPA{MinReplicas: 1, MaxReplicas: 100, Tolerance: ptr(0.0), Behavior: &Behavior{ScaleDown: &ScalingRules{
		StabilizationWindow: &w, Policies: []ScalingPolicy{{Type: PercentPolicy, Value: 10, Period: 60 * time.Second}},
	}}}
	got := run(h, 50, repeat(1, 9))
	// 50 → 45 at once (floor(50 × 0.9)), then nothing until the 60 s period has passed.
	if want := []int32{45, 45, 45, 45, 40, 40, 40, 40, 36}; !slices.Equal(got, want) {
		t.Errorf("scale-down %v, want %v", got, want)
	}
}

func TestHPAExactBehaviorFollowsDecision(t *testing.T) {
	// With ExactBehavior the final count equals the decision at every sync, for any sequence
	// of decisions within [1, max].
	const maxR = 40
	b := ExactBehavior(maxR)
	h := HPA{MinReplicas: 1, MaxReplicas: maxR, Behavior: &b}
	rng := rand.New(rand.NewPCG(1, 2))
	var st HPAState
	cur := int32(1)
	for i := 0; i < 2000; i++ {
		want := int32(rng.IntN(maxR) + 1)
		cur = h.Sync(&st, cur, MetricValue(Decision{Replicas: want}), t0.Add(time.Duration(i)*sync))
		if cur != want {
			t.Fatalf("sync %d: HPA wrote %d, decision %d", i, cur, want)
		}
	}
}

func TestHPAValidate(t *testing.T) {
	bad := []HPA{
		{MaxReplicas: 0},
		{MinReplicas: 5, MaxReplicas: 3},
		{MaxReplicas: 3, Tolerance: ptr(-1.0)},
		{MaxReplicas: 3, Behavior: &Behavior{ScaleUp: &ScalingRules{SelectPolicy: "Most"}}},
		{MaxReplicas: 3, Behavior: &Behavior{ScaleDown: &ScalingRules{Policies: []ScalingPolicy{{Type: "Pods", Value: 0, Period: time.Second}}}}},
	}
	for _, h := range bad {
		if err := h.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", h)
		}
	}
	if err := (HPA{MinReplicas: 1, MaxReplicas: 3}).Validate(); err != nil {
		t.Errorf("valid HPA: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
