package scaler

import (
	"testing"
	"time"
)

// inputFrom builds a policy and an input from fuzzed integers, keeping them in their valid
// ranges so that every generated case is one the server could see.
func inputFrom(ready, unacked int64, cur, readyPods, pending, busy, fit, maxR, stepPods int32,
	stepPct uint8, mpr uint8, flags uint8, ageS uint16) (Policy, Input) {
	abs64 := func(v int64) int64 {
		if v < 0 {
			v = -v
		}
		return v % 1_000_000
	}
	abs32 := func(v int32, m int32) int32 {
		if v < 0 {
			v = -v
		}
		if v < 0 { // MinInt32
			v = 0
		}
		return v % m
	}
	p := Policy{
		MessagesPerReplica: float64(mpr%20 + 1),
		MaxReplicas:        abs32(maxR, 500) + 1,
		StepPods:           abs32(stepPods, 20),
		StepPercent:        float64(stepPct%200) / 100,
		ExcludeUnacked:     flags&1 != 0,
		AllowBusyScaleDown: flags&2 != 0,
		ServiceTime:        time.Duration(flags>>4) * time.Second,
	}
	cur = abs32(cur, 600)
	in := Input{
		Queue: Queue{
			Ready: abs64(ready), Unacked: abs64(unacked),
			InFlightVisible: flags&4 == 0,
			RatesKnown:      flags&8 != 0, PublishRate: float64(ageS % 50),
			EmptySince: t0.Add(-time.Duration(ageS) * time.Second),
		},
		Failed:         flags&64 != 0,
		Current:        cur,
		Ready:          abs32(readyPods, cur+1),
		Pending:        abs32(pending, 5),
		Busy:           abs32(busy, cur+1),
		BusyKnown:      flags&128 != 0,
		Fit:            fit % 1000,
		Removable:      abs32(busy, cur+2),
		RemovableKnown: flags&16 != 0 && flags&2 == 0,
		LastScaleUp:    t0.Add(-time.Duration(ageS) * time.Second),
	}
	if !in.Queue.InFlightVisible {
		in.Queue.Unacked = 0
	}
	return p, in
}

func checkInvariants(t *testing.T, p Policy, in Input) {
	t.Helper()
	d := Decide(p, in, t0)
	max := p.WithDefaults().MaxReplicas
	if d.Replicas < 0 || d.Replicas > max {
		t.Fatalf("Replicas %d outside [0, %d]; policy %+v input %+v", d.Replicas, max, p, in)
	}
	if d.Replicas > in.Current {
		if up, room := d.Replicas-in.Current, max32(in.Fit, 0); up > room {
			t.Fatalf("scaled up by %d with fit %d; input %+v", up, in.Fit, in)
		}
	}
	work := in.Queue.Ready + in.Queue.Unacked
	if d.Replicas == 0 && !in.Failed && work > 0 && (in.Current > 0 || in.Fit > 0) {
		t.Fatalf("zero with %d messages of work; input %+v: %s", work, in, d.Explain())
	}
	if in.Failed && d.Replicas < min(in.Current, max) {
		t.Fatalf("failed read lowered %d to %d", in.Current, d.Replicas)
	}
	if in.Failed && d.Replicas == 0 && (in.Current > 0 || in.Fit > 0) {
		t.Fatalf("failed read answered zero; input %+v", in)
	}
	if d.Limit == "" || d.Explain() == "" {
		t.Fatalf("decision without a limit or explanation: %+v", d)
	}
	// Monotone in queue depth: one more ready message never lowers the answer.
	more := in
	more.Queue.Ready++
	if d2 := Decide(p, more, t0); d2.Replicas < d.Replicas {
		t.Fatalf("not monotone: %d ready → %d, %d ready → %d; input %+v", in.Queue.Ready, d.Replicas, more.Queue.Ready, d2.Replicas, in)
	}
	if !in.Queue.InFlightVisible {
		return
	}
	moreUnacked := in
	moreUnacked.Queue.Unacked++
	if d2 := Decide(p, moreUnacked, t0); d2.Replicas < d.Replicas {
		t.Fatalf("not monotone in unacked: %d → %d; input %+v", d.Replicas, d2.Replicas, in)
	}
}

func max32(a, b int32) int32 { return max(a, b) }

func FuzzDecide(f *testing.F) {
	f.Add(int64(50), int64(0), int32(0), int32(0), int32(0), int32(0), int32(10), int32(100), int32(1), uint8(50), uint8(0), uint8(0), uint16(0))
	f.Add(int64(0), int64(5), int32(8), int32(8), int32(0), int32(5), int32(0), int32(10), int32(0), uint8(0), uint8(9), uint8(128), uint16(30))
	f.Add(int64(0), int64(0), int32(4), int32(4), int32(0), int32(0), int32(0), int32(10), int32(0), uint8(0), uint8(0), uint8(4), uint16(61))
	f.Add(int64(9), int64(0), int32(0), int32(0), int32(0), int32(0), int32(-3), int32(10), int32(0), uint8(0), uint8(0), uint8(64), uint16(61))
	f.Add(int64(900), int64(0), int32(6), int32(4), int32(1), int32(0), int32(50), int32(99), int32(2), uint8(25), uint8(3), uint8(8|16), uint16(200))
	f.Fuzz(func(t *testing.T, ready, unacked int64, cur, readyPods, pending, busy, fit, maxR, stepPods int32,
		stepPct, mpr, flags uint8, ageS uint16) {
		p, in := inputFrom(ready, unacked, cur, readyPods, pending, busy, fit, maxR, stepPods, stepPct, mpr, flags, ageS)
		if err := p.Validate(); err != nil {
			t.Fatalf("generator made an invalid policy: %v", err)
		}
		checkInvariants(t, p, in)
	})
}

// TestDecideProperties runs the invariants over a deterministic grid, so that they are checked
// on every `go test` and not only when fuzzing.
func TestDecideProperties(t *testing.T) {
	n := 0
	for _, ready := range []int64{0, 1, 7, 100, 5000} {
		for _, unacked := range []int64{0, 1, 9} {
			for _, cur := range []int32{0, 1, 6, 40} {
				for _, fit := range []int32{-2, 0, 1, 5, 100} {
					for _, flags := range []uint8{0, 1, 2, 4, 8 | 32, 64, 128, 128 | 2, 4 | 64} {
						for _, maxR := range []int32{0, 4, 49} {
							p, in := inputFrom(ready, unacked, cur, cur-1, int32(flags%2), unacked32(unacked), fit, maxR, 1, 50, 1, flags, uint16(n%130))
							checkInvariants(t, p, in)
							n++
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no cases")
	}
}

func unacked32(u int64) int32 { return int32(u) }

func TestShareProperties(t *testing.T) {
	cases := [][]Claim{
		{{Key: "a", Weight: 1, Want: 10}, {Key: "b", Weight: 1, Want: 10}},
		{{Key: "a", Weight: 3, Want: 100}, {Key: "b", Weight: 1, Want: 100}, {Key: "c", Weight: 0, Want: 2}},
		{{Key: "x", Weight: 0.7, Want: 5}, {Key: "y", Weight: 2.2, Want: 50}, {Key: "z", Weight: 1, Want: 0}, {Key: "w", Weight: 1, Want: -4}},
		{{Key: "a", Weight: 3, Held: 1, Want: 19}, {Key: "b", Weight: 1, Held: 3, Want: 17}},
		{{Key: "a", Weight: 1, Held: 40, Want: 60}, {Key: "b", Weight: 2, Held: 7, Want: 9}, {Key: "c", Weight: 0.5, Held: 0, Want: 200}},
	}
	for _, claims := range cases {
		for free := int64(-1); free < 130; free++ {
			checkShare(t, free, claims)
		}
	}
}

// checkShare checks Share's contract on one input: bounds, work conservation, max-min
// fairness over what the claims hold and get, and independence from the claims' order.
func checkShare(t *testing.T, free int64, claims []Claim) {
	t.Helper()
	got := Share(free, claims)
	var sum, want int64
	for i, g := range got {
		if g < 0 || g > max(claims[i].Want, 0) {
			t.Fatalf("free %d %+v: claim %s got %d of want %d", free, claims, claims[i].Key, g, claims[i].Want)
		}
		sum += g
		want += max(claims[i].Want, 0)
	}
	// Work-conserving, and never more than the room: room is left only when every claim is
	// served.
	if sum != min(max(free, 0), want) {
		t.Fatalf("free %d %+v: allocated %d, want %d", free, claims, sum, min(max(free, 0), want))
	}
	// Fair: no unit could move from a claim j that got some to a claim i that still wants
	// more and, with that unit, would still be below j in room per weight. One unit of slack
	// for the rounding of both.
	weight := func(c Claim) float64 {
		if c.Weight > 0 {
			return c.Weight
		}
		return 1
	}
	for i, ci := range claims {
		if got[i] >= max(ci.Want, 0) {
			continue
		}
		for j, cj := range claims {
			if got[j] == 0 {
				continue
			}
			hi := float64(max(ci.Held, 0)+got[i]+1) / weight(ci)
			hj := float64(max(cj.Held, 0)+got[j]-1) / weight(cj)
			if hi < hj-1/weight(ci)-1/weight(cj)-1e-9 {
				t.Fatalf("free %d %+v: got %v; %s (%.2f per weight with one more) is below %s (%.2f with one less)",
					free, claims, got, ci.Key, hi, cj.Key, hj)
			}
		}
	}
	// Deterministic and independent of claim order.
	rev := make([]Claim, len(claims))
	for i := range claims {
		rev[len(claims)-1-i] = claims[i]
	}
	got2 := Share(free, rev)
	for i := range claims {
		if got[i] != got2[len(claims)-1-i] {
			t.Fatalf("free %d %+v: order changed the result: %v vs reversed %v", free, claims, got, got2)
		}
	}
}

func FuzzShare(f *testing.F) {
	f.Add(int64(10), int64(4), int64(9), int64(1), uint8(1), uint8(2), uint8(3), int64(0), int64(5), int64(0))
	f.Add(int64(4), int64(19), int64(17), int64(0), uint8(3), uint8(3), uint8(0), int64(1), int64(3), int64(0))
	f.Fuzz(func(t *testing.T, free, a, b, c int64, wa, wb, wc uint8, ha, hb, hc int64) {
		claims := []Claim{
			{Key: "a", Weight: float64(wa), Held: ha % 1e9, Want: a % 1e9},
			{Key: "b", Weight: float64(wb) / 3, Held: hb % 1e9, Want: b % 1e9},
			{Key: "c", Weight: float64(wc), Held: hc % 1e9, Want: c % 1e9},
		}
		checkShare(t, free%1e9, claims)
	})
}
