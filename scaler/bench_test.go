package scaler

import "testing"

var sink Decision

func BenchmarkDecide(b *testing.B) {
	p := DefaultPolicy()
	inputs := []Input{
		{Queue: visible(500, 20), Current: 12, Ready: 12, Fit: 6, Busy: 12, BusyKnown: true},
		{Queue: visible(0, 3), Current: 9, Ready: 9, Busy: 3, BusyKnown: true},
		{Queue: Queue{EmptySince: t0}, Current: 4, Ready: 4},
		{Queue: visible(40, 0), Current: 6, Ready: 4, LastScaleUp: t0},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink = Decide(p, inputs[i%len(inputs)], t0)
	}
}

func BenchmarkShare(b *testing.B) {
	claims := []Claim{{Key: "a", Weight: 3, Want: 100}, {Key: "b", Weight: 1, Want: 7}, {Key: "c", Weight: 2, Want: 60}}
	b.ReportAllocs()
	for b.Loop() {
		_ = Share(120, claims)
	}
}
