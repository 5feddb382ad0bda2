package scaler

import (
	"math"
	"sort"
)

// Claim is one ScaledObject's request for free room.
type Claim struct {
	Key    string  // a stable, unique name (namespace/name); breaks ties
	Weight float64 // relative weight; a non-positive or NaN weight counts as 1
	// Held is the room the claim already runs on, in the same unit: it counts towards the
	// claim's part, but is never taken away. ≤ 0 holds nothing.
	Held int64
	Want int64 // how much more room it asks for; ≤ 0 asks for nothing
}

// Share splits free units of room among claims by weight (weighted max-min fairness over
// what the claims hold and get): the room each claim ends up with, Held plus its allocation,
// is in proportion to its weight, except that a claim that asks for less gets exactly what it
// asked for, and a claim that already holds more than its part gets nothing (nothing is taken
// back from it). What those leave is shared again among the others. So the order in which
// claims arrived does not decide the split: a claim that came first and took room keeps it,
// and the room that frees up or is left goes to the claims below their part first.
//
// Indivisible remainders go to the largest fractional parts, ties to the larger weight, then
// the smaller Key. It returns one allocation per claim, in order, with
//
//	Σ alloc = min(max(free, 0), Σ max(Want[i], 0)),  0 ≤ alloc[i] ≤ max(Want[i], 0),
//
// and the result does not depend on the order of claims with distinct keys.
func Share(free int64, claims []Claim) []int64 {
	alloc := make([]int64, len(claims))
	free = max(free, 0)
	type part struct {
		i          int
		w, h, r, a float64
		rest       int64
	}
	var parts []part
	var wanted int64
	for i, c := range claims {
		if c.Want <= 0 {
			continue
		}
		rest := min(c.Want, free) // nobody can get more than the room
		wanted += rest
		w := c.Weight
		if !(w > 0) || math.IsInf(w, 0) {
			w = 1
		}
		parts = append(parts, part{i: i, w: w, h: float64(max(c.Held, 0)), r: float64(rest), rest: rest})
	}
	if free == 0 || len(parts) == 0 {
		return alloc
	}
	if wanted <= free {
		for _, p := range parts {
			alloc[p.i] = p.rest
		}
		return alloc
	}
	// Work in key order so that floating-point sums, and so the result, do not depend on the
	// order of the claims.
	sort.Slice(parts, func(a, b int) bool { return claims[parts[a].i].Key < claims[parts[b].i].Key })

	// The water level λ: claim i ends up with clamp(λ·w, held, held+rest), and the totals
	// add up to free + Σ held. The sum is piecewise linear and non-decreasing in λ: claim i
	// rises with slope w between held/w and (held+rest)/w. Sweep those corners in order,
	// keeping the sum and the slope, until the sum reaches the target; O(n log n).
	total := func(p part, level float64) float64 { return min(max(level*p.w, p.h), p.h+p.r) }
	type corner struct{ at, dw float64 }
	corners := make([]corner, 0, 2*len(parts))
	target, sum := float64(free), 0.0
	for _, p := range parts {
		sum += p.h
		corners = append(corners, corner{p.h / p.w, p.w}, corner{(p.h + p.r) / p.w, -p.w})
	}
	target += sum
	sort.Slice(corners, func(a, b int) bool { return corners[a].at < corners[b].at })
	level, slope := corners[0].at, 0.0
	for k := 0; k < len(corners); {
		if at := corners[k].at; at > level {
			next := sum + slope*(at-level)
			if next >= target {
				level += (target - sum) / slope
				break
			}
			sum, level = next, at
		}
		for at := corners[k].at; k < len(corners) && corners[k].at == at; k++ {
			slope += corners[k].dw
		}
	}

	// Whole units: floors, then what is left to the largest fractional parts.
	left := free
	for k := range parts {
		p := &parts[k]
		p.a = total(*p, level) - p.h
		n := min(int64(math.Floor(p.a)), p.rest)
		alloc[p.i] = n
		left -= n
		p.a -= float64(n)
	}
	sort.SliceStable(parts, func(a, b int) bool {
		x, y := parts[a], parts[b]
		if x.a != y.a {
			return x.a > y.a
		}
		if x.w != y.w {
			return x.w > y.w
		}
		return claims[x.i].Key < claims[y.i].Key
	})
	for given := true; left > 0 && given; {
		given = false
		for _, p := range parts {
			if left > 0 && alloc[p.i] < p.rest {
				alloc[p.i]++
				left--
				given = true
			}
		}
	}
	return alloc
}
