package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"
)

// maxMessages bounds a run's messages (arrivals.scale can multiply a trace).
const maxMessages = 200_000_000

// arrivals is a compiled arrival series: messages per second, and each message's service
// time in seconds (ticks), in arrival order.
type arrivals struct {
	counts  []int64 // messages arriving during second t
	total   int64
	svc     func(i int64) int64
	meanSvc float64 // mean service time of the messages, in seconds
	start   time.Time
	source  string
}

// compileArrivals turns the scenario's trace (or override) or generator into messages.
func (sc *Scenario) compileArrivals(trace *Trace) (*arrivals, error) {
	a := &arrivals{}
	scale := sc.Arrivals.Scale
	if scale == 0 {
		scale = 1
	}
	var reqs []int64 // request index of each message (events with sizes only)
	switch {
	case trace != nil:
		a.source, a.start = trace.Name, trace.Start
		a.counts = make([]int64, len(trace.Counts))
		keepReqs := sc.Service.Kind == "sizes"
		var cum int64
		for t, c := range trace.Counts {
			before := int64(math.Floor(float64(cum) * scale))
			if keepReqs {
				for r := cum; r < cum+c; r++ {
					k := int64(math.Floor(float64(r+1)*scale)) - int64(math.Floor(float64(r)*scale))
					for range k {
						reqs = append(reqs, r)
					}
				}
			}
			cum += c
			a.counts[t] = int64(math.Floor(float64(cum)*scale)) - before
		}
	default:
		a.source = "synthetic " + sc.Arrivals.Synthetic.Kind
		a.counts = sc.Arrivals.Synthetic.generate(sc.seed())
		if scale != 1 {
			var cum, prev int64
			for t, c := range a.counts {
				cum += c
				next := int64(math.Floor(float64(cum) * scale))
				a.counts[t], prev = next-prev, next
			}
		}
	}
	for _, c := range a.counts {
		a.total += c
	}
	if a.total > maxMessages {
		return nil, fmt.Errorf("%s: %d messages: more than the %d the simulator replays; lower arrivals scale (%v)", a.source, a.total, int64(maxMessages), scale)
	}
	if a.total == 0 {
		return nil, fmt.Errorf("%s: no messages arrive (the trace is empty or arrivals scale %v thins it to nothing)", a.source, scale)
	}
	svc, err := sc.Service.compile(sc.seed(), trace, reqs)
	if err != nil {
		return nil, err
	}
	a.svc = svc
	var sum float64
	for i := range a.total {
		sum += float64(svc(i))
	}
	a.meanSvc = sum / float64(a.total)
	return a, nil
}

func (sc *Scenario) seed() uint64 {
	if sc.Seed == 0 {
		return 1
	}
	return sc.Seed
}

// unit is a uniform number in (0, 1] derived from (seed, i) by SplitMix64, so that message i
// has the same service time in every policy's run, whatever order they run in.
func unit(seed uint64, i int64) float64 {
	z := seed*0x9e3779b97f4a7c15 + uint64(i)*0xbf58476d1ce4e5b9 + 0x94d049bb133111eb
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return (float64(z>>11) + 1) / (1 << 53)
}

// wholeSeconds rounds a service time up to whole ticks, at least one.
func wholeSeconds(s float64) int64 {
	return max(int64(math.Ceil(s-1e-9)), 1)
}

func (s Service) compile(seed uint64, trace *Trace, reqs []int64) (func(int64) int64, error) {
	switch s.Kind {
	case "fixed":
		v := wholeSeconds(s.Mean.Seconds())
		return func(int64) int64 { return v }, nil
	case "exponential":
		m := s.Mean.Seconds()
		return func(i int64) int64 { return wholeSeconds(-m * math.Log(unit(seed, i))) }, nil
	case "uniform":
		lo, hi := s.Min.Seconds(), s.Max.Seconds()
		return func(i int64) int64 { return wholeSeconds(lo + (hi-lo)*unit(seed, i)) }, nil
	}
	// sizes: base + Σ perUnit[column] × value.
	if trace == nil || trace.Sizes == nil {
		return nil, fmt.Errorf("service kind sizes: the trace has no size columns (it must be an events trace)")
	}
	cols := make([]int, 0, len(s.PerUnit))
	per := make([]float64, 0, len(s.PerUnit))
	names := make([]string, 0, len(s.PerUnit))
	for c := range s.PerUnit {
		names = append(names, c)
	}
	sort.Strings(names)
	for _, c := range names {
		idx := -1
		for k, tc := range trace.Columns {
			if tc == c {
				idx = k
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("service perUnit: unknown column %q: %s has the size columns %v", c, trace.Name, trace.Columns)
		}
		cols = append(cols, idx)
		per = append(per, s.PerUnit[c].Seconds())
	}
	svc := make([]int64, len(reqs))
	base := s.Base.Seconds()
	for i, r := range reqs {
		v := base
		for k, c := range cols {
			v += per[k] * trace.Sizes[r][c]
		}
		svc[i] = wholeSeconds(v)
	}
	return func(i int64) int64 { return svc[i] }, nil
}

// generate makes the synthetic series. Deterministic kinds spread fractional rates exactly:
// second t gets ⌊R(t+1)⌋ − ⌊R(t)⌋ messages, R being the integral of the rate.
func (g *Synthetic) generate(seed uint64) []int64 {
	n := int64(g.Length.Seconds())
	out := make([]int64, n)
	at := int64(g.At.Seconds())
	width, every := int64(g.Width.Seconds()), int64(g.Every.Seconds())
	period := g.Period.Seconds()
	if period <= 0 {
		period = 24 * 3600
	}
	rate := func(t int64) float64 {
		switch g.Kind {
		case "step":
			if t >= at {
				return g.To
			}
		case "burst":
			if t >= at {
				off := t - at
				if every > 0 {
					off %= every
				}
				if off < width && (every > 0 || t-at < width) {
					return g.To
				}
			}
		case "diurnal":
			return g.Rate + g.To*math.Sin(2*math.Pi*float64(t)/period)
		}
		return g.Rate
	}
	if g.Kind == "poisson" {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		for t := range out {
			out[t] = poisson(rng, g.Rate)
		}
		return out
	}
	var cum float64
	for t := range n {
		next := cum + rate(t)
		out[t] = int64(math.Floor(next+1e-9)) - int64(math.Floor(cum+1e-9))
		cum = next
	}
	return out
}

// poisson draws a Poisson(λ) count (Knuth's method for small λ, a rounded normal above 50).
func poisson(rng *rand.Rand, lambda float64) int64 {
	if lambda <= 0 {
		return 0
	}
	if lambda > 50 {
		return max(int64(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())), 0)
	}
	l, k, p := math.Exp(-lambda), int64(0), 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
