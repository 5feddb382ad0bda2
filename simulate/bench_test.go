package simulate

import (
	"context"
	"testing"
)

// BenchmarkWorldCup replays the 48 h World Cup 98 trace at 1 s resolution (plus the drain
// hour) through every policy of the default scenario. One op is the whole comparison.
func BenchmarkWorldCup(b *testing.B) {
	sc, ok, err := LoadShipped(DefaultScenario)
	if err != nil || !ok {
		b.Fatalf("LoadShipped: %v %v", ok, err)
	}
	for b.Loop() {
		if _, err := Run(context.Background(), sc, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWorldCupPolicy is the same replay for one policy at a time.
func BenchmarkWorldCupPolicy(b *testing.B) {
	for _, p := range AllPolicies {
		b.Run(p, func(b *testing.B) {
			sc, _, err := LoadShipped(DefaultScenario)
			if err != nil {
				b.Fatal(err)
			}
			sc.Run = []string{p}
			for b.Loop() {
				if _, err := Run(context.Background(), sc, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
