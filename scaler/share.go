package scaler

import (
	"math"
	"sort"
)

// Claim is one ScaledObject's request for free room.
type Claim struct {
	Key    string  // a stable, unique name (namespace/name); breaks ties
	Weight float64 // relative weight; a non-positive or NaN weight counts as 1
	Want   int64   // how much room it asks for, in the caller's unit; ≤ 0 asks for nothing
}

// Share splits free units of room among claims by weight (weighted max-min fairness): every
// claim gets room in proportion to its weight, a claim that asks for less than its proportion
// gets exactly what it asked for, and what it leaves is shared again among the others.
// Indivisible remainders go to the largest fractional parts, ties to the larger weight, then
// the smaller Key. It returns one allocation per claim, in order, with
//
//	Σ alloc ≤ max(free, 0),  0 ≤ alloc[i] ≤ max(Want[i], 0),
//
// and the result does not depend on the order of claims with distinct keys.
func Share(free int64, claims []Claim) []int64 {
	alloc := make([]int64, len(claims))
	remaining := max(free, 0)
	active := make([]int, 0, len(claims))
	for i, c := range claims {
		if c.Want > 0 {
			active = append(active, i)
		}
	}
	// Work in key order so that floating-point sums, and so the result, do not depend on the
	// order of the claims.
	sort.SliceStable(active, func(a, b int) bool { return claims[active[a]].Key < claims[active[b]].Key })
	w := func(i int) float64 {
		if x := claims[i].Weight; x > 0 && !math.IsInf(x, 0) {
			return x
		}
		return 1
	}
	for remaining > 0 && len(active) > 0 {
		var total float64
		for _, i := range active {
			total += w(i)
		}
		// Claims that ask for no more than their fair part are served in full; the rest is
		// shared again.
		next := active[:0:0]
		served := false
		for _, i := range active {
			fair := float64(remaining) * w(i) / total
			if rest := claims[i].Want - alloc[i]; float64(rest) <= fair {
				alloc[i] += rest
				served = true
			} else {
				next = append(next, i)
			}
		}
		if served {
			remaining = max(free, 0)
			for _, a := range alloc {
				remaining -= a
			}
			active = next
			continue
		}
		// Everyone wants more than its part: floors, then the remainder by largest fraction.
		type frac struct {
			i int
			f float64
		}
		fr := make([]frac, len(active))
		given := int64(0)
		for k, i := range active {
			fair := float64(remaining) * w(i) / total
			fl := int64(math.Floor(fair))
			alloc[i] += fl
			given += fl
			fr[k] = frac{i, fair - float64(fl)}
		}
		left := remaining - given
		sort.Slice(fr, func(a, b int) bool {
			fa, fb := fr[a], fr[b]
			if fa.f != fb.f {
				return fa.f > fb.f
			}
			if w(fa.i) != w(fb.i) {
				return w(fa.i) > w(fb.i)
			}
			return claims[fa.i].Key < claims[fb.i].Key
		})
		for k := 0; k < len(fr) && left > 0; k++ {
			alloc[fr[k].i]++
			left--
		}
		break
	}
	return alloc
}
