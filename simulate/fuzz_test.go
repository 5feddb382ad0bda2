package simulate

import (
	"strings"
	"testing"
)

// FuzzReadTrace: any input gives a trace or an error, never a panic, and a trace is never
// empty.
func FuzzReadTrace(f *testing.F) {
	for _, s := range []string{
		"period,count\n1998-06-25 22:00:01,3\n1998-06-25 22:00:02,0\n",
		"period,count\n0,120\n60,30\n",
		"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n",
		"time\n0.5\n0.7\n2\n",
		"TIMESTAMP\n2023-02-31 00:00:00\n",
		"period,count\n1e300,1\n",
	} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, in, format string) {
		tr, err := ReadTrace(strings.NewReader(in), "f.csv", format)
		if err == nil && (tr == nil || len(tr.Counts) == 0) {
			t.Fatalf("no error and no data for %q", in)
		}
	})
}

// FuzzScenario: any scenario text is parsed, rejected with an error, or run without panic.
func FuzzScenario(f *testing.F) {
	f.Add(validScenario)
	f.Add(strings.Replace(validScenario, "rate: 1", "rate: 1e9", 1))
	f.Add(strings.Replace(validScenario, "kind: constant", "kind: poisson", 1))
	f.Fuzz(func(t *testing.T, y string) {
		sc, err := parseScenario([]byte(y), "f.yaml", nil)
		if err != nil || sc.Arrivals.Trace != "" {
			return
		}
		_, _ = Run(t.Context(), sc, Options{})
	})
}
