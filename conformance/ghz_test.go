package conformance

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// ghzJSON builds a ghz report of n calls, call i ending at t0 + i ms after i µs, with the
// given statuses for the failed ones.
func ghzJSON(t *testing.T, n int, failed map[int]string) []byte {
	t.Helper()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type detail struct {
		Timestamp time.Time     `json:"timestamp"`
		Latency   time.Duration `json:"latency"`
		Status    string        `json:"status"`
		Error     string        `json:"error"`
	}
	r := struct {
		StatusCodeDist map[string]int `json:"statusCodeDistribution"`
		ErrorDist      map[string]int `json:"errorDistribution"`
		Details        []detail       `json:"details"`
	}{StatusCodeDist: map[string]int{}, ErrorDist: map[string]int{}}
	// Listed newest first: the split must sort by end time, not trust the order.
	for i := n - 1; i >= 0; i-- {
		d := detail{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), Latency: time.Duration(i) * time.Microsecond, Status: "OK"}
		if st, ok := failed[i]; ok {
			d.Status, d.Error = st, "rpc error"
			r.ErrorDist["rpc error"]++
		}
		r.StatusCodeDist[d.Status]++
		r.Details = append(r.Details, d)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGhzRounds(t *testing.T) {
	walls, lat, err := ghzRounds(ghzJSON(t, 3*fleetSize, nil), 3)
	if err != nil {
		t.Fatal(err)
	}
	// Rounds 2 and 3: from the end of call 999 to the end of call 2999.
	if want := 2000 * time.Millisecond; walls != want {
		t.Errorf("walls = %v, want %v", walls, want)
	}
	if len(lat) != 2*fleetSize {
		t.Fatalf("%d latencies, want %d", len(lat), 2*fleetSize)
	}
	for _, l := range lat {
		if l < time.Duration(fleetSize)*time.Microsecond {
			t.Fatalf("latency %v of the warm-up round reported", l)
		}
	}

	if _, _, err := ghzRounds(ghzJSON(t, 2*fleetSize, map[int]string{1500: "Unavailable"}), 2); err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Errorf("a failed call: err = %v, want one naming its status", err)
	}
	if _, _, err := ghzRounds(ghzJSON(t, fleetSize, nil), 2); err == nil || !strings.Contains(err.Error(), "1000 calls, want 2000") {
		t.Errorf("calls missing: err = %v", err)
	}
	if _, _, err := ghzRounds([]byte("Summary: not json"), 1); err == nil {
		t.Error("a report that is not JSON: no error")
	}
}

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	before := map[float64]float64{0.001: 10, 0.01: 10, 0.1: 10, inf: 10}
	// 100 new calls: 90 under 1 ms, 9 more under 10 ms, 1 under 100 ms.
	after := map[float64]float64{0.001: 100, 0.01: 109, 0.1: 110, inf: 110}
	for q, want := range map[float64]float64{0.5: 0.001, 0.9: 0.001, 0.95: 0.01, 0.99: 0.01, 1: 0.1} {
		if got := bucketQuantile(before, after, q); got != want {
			t.Errorf("quantile %v = %v, want %v", q, got, want)
		}
	}
	if got := bucketQuantile(nil, map[float64]float64{}, 0.5); got != 0 {
		t.Errorf("no buckets: %v, want 0", got)
	}
}

// Each benchmark of a run writes its scaler profile to a file of its own: the second
// sub-benchmark no longer overwrites the first's.
func TestProfilePath(t *testing.T) {
	for _, tc := range []struct{ base, name, want string }{
		{"", "BenchmarkScalerIdle", ""},
		{"scaler.prof", "BenchmarkScalerServeGRPC/pollers=32", "scaler.BenchmarkScalerServeGRPC_pollers=32.prof"},
		{"out/scaler", "BenchmarkScalerIdle", "out/scaler.BenchmarkScalerIdle"},
	} {
		if got := profilePath(tc.base, tc.name); got != tc.want {
			t.Errorf("profilePath(%q, %q) = %q, want %q", tc.base, tc.name, got, tc.want)
		}
	}
}
