package simulate

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReadTrace(t *testing.T) {
	tests := []struct {
		name, in, format string
		wantFormat       []int64
		wantColumns      []string
		wantStart        time.Time
	}{
		{
			name: "counts per second", in: "period,count\n1998-06-25 22:00:01,3\n1998-06-25 22:00:02,0\n1998-06-25 22:00:03,5\n",
			wantFormat: []int64{3, 0, 5}, wantStart: time.Date(1998, 6, 25, 22, 0, 1, 0, time.UTC),
		},
		{
			name: "counts per minute spread over the seconds", in: "period,count\n0,120\n60,30\n",
			wantFormat: append(slices.Repeat([]int64{2}, 60), slices.Repeat([]int64{0, 1}, 30)...),
		},
		{
			name: "a gap in a counts series is zero arrivals", in: "period,count\n0,1\n1,1\n3,4\n",
			wantFormat: []int64{1, 1, 0, 4},
		},
		{
			name: "events with sizes", in: "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n2023-11-16 18:17:06.5,10,1\n",
			wantFormat: []int64{1, 1, 0, 1}, wantColumns: []string{"ContextTokens", "GeneratedTokens"},
			wantStart: time.Date(2023, 11, 16, 18, 17, 3, 0, time.UTC),
		},
		{
			name: "events without sizes, numeric timestamps", in: "time\n0.5\n0.7\n2\n",
			wantFormat: []int64{2, 0, 1}, wantColumns: []string{},
		},
		{
			name: "format given", in: "period,count\n0,1\n", format: FormatCounts,
			wantFormat: []int64{1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ReadTrace(strings.NewReader(tc.in), "t.csv", tc.format)
			if err != nil {
				t.Fatalf("ReadTrace: %v", err)
			}
			if !slices.Equal(tr.Counts, tc.wantFormat) {
				t.Errorf("counts = %v, want %v", tr.Counts, tc.wantFormat)
			}
			if tc.wantColumns != nil && !slices.Equal(tr.Columns, tc.wantColumns) {
				t.Errorf("columns = %q, want %q", tr.Columns, tc.wantColumns)
			}
			if !tr.Start.Equal(tc.wantStart) {
				t.Errorf("start = %v, want %v", tr.Start, tc.wantStart)
			}
		})
	}
}

func TestReadTraceErrors(t *testing.T) {
	tests := []struct {
		name, in, format string
		want             []string // substrings of the error
	}{
		{name: "empty file", in: "", want: []string{"bad.csv", "empty trace"}},
		{name: "header only", in: "period,count\n", want: []string{"bad.csv", "empty trace"}},
		{name: "unknown header", in: "when,how many\n1,2\n", want: []string{"bad.csv:1", `"when,how many"`}},
		{name: "unknown column in counts", in: "period,requests\n0,1\n", format: FormatCounts, want: []string{"bad.csv:1", `unknown column "requests"`}},
		{name: "extra column in counts", in: "period,count,bytes\n0,1,2\n", format: FormatCounts, want: []string{"bad.csv:1", `unknown column "bytes"`}},
		{name: "events without timestamp column", in: "period,count\n0,1\n", format: FormatEvents, want: []string{"bad.csv:1", `unknown column "period"`}},
		{name: "unsorted counts", in: "period,count\n5,1\n3,1\n", want: []string{"bad.csv:3", `period "3"`, "sorted"}},
		{name: "duplicate period", in: "period,count\n5,1\n5,1\n", want: []string{"bad.csv:3", `period "5"`}},
		{name: "unsorted events", in: "TIMESTAMP,n\n2023-11-16 18:17:04,1\n2023-11-16 18:17:03,1\n", want: []string{"bad.csv:3", `"2023-11-16 18:17:03"`, "sorted"}},
		{name: "negative count", in: "period,count\n0,-1\n", want: []string{"bad.csv:2", `count "-1"`}},
		{name: "bad timestamp", in: "TIMESTAMP\nyesterday\n", want: []string{"bad.csv:2", `timestamp "yesterday"`}},
		{name: "bad size", in: "TIMESTAMP,tokens\n1,many\n", want: []string{"bad.csv:2", `tokens "many"`}},
		{name: "short row", in: "TIMESTAMP,a,b\n1,2\n", want: []string{"bad.csv:2", `"1,2"`, "want 3 fields"}},
		{name: "unknown format", in: "period,count\n0,1\n", format: "csv", want: []string{`format "csv"`}},
		{name: "fractional periods", in: "period,count\n0,1\n0.5,1\n", want: []string{"bad.csv", "0.5s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadTrace(strings.NewReader(tc.in), "bad.csv", tc.format)
			if err == nil {
				t.Fatalf("ReadTrace: no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestRealTraces loads both shipped traces in their own and in the detected format.
func TestRealTraces(t *testing.T) {
	tests := []struct {
		file          string
		wantSeconds   int
		wantRequests  int64
		wantColumns   []string
		wantFormatted string
	}{
		{file: "worldcup98-per-second.csv", wantSeconds: 172800, wantRequests: 90233538, wantFormatted: FormatCounts},
		{file: "azure-llm-code-2023.csv", wantSeconds: 3437, wantRequests: 8819, wantColumns: []string{"ContextTokens", "GeneratedTokens"}, wantFormatted: FormatEvents},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "traces", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tr, err := ReadTrace(f, tc.file, "")
			if err != nil {
				t.Fatalf("ReadTrace: %v", err)
			}
			if len(tr.Counts) != tc.wantSeconds || tr.Requests() != tc.wantRequests {
				t.Errorf("got %d seconds and %d requests, want %d and %d", len(tr.Counts), tr.Requests(), tc.wantSeconds, tc.wantRequests)
			}
			if !slices.Equal(tr.Columns, tc.wantColumns) {
				t.Errorf("columns = %q, want %q", tr.Columns, tc.wantColumns)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSyntheticGenerators(t *testing.T) {
	dur := func(s string) Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return Duration{d}
	}
	tests := []struct {
		name      string
		gen       Synthetic
		wantTotal int64
		check     func(c []int64) string
	}{
		{name: "constant fractional rate spreads exactly", gen: Synthetic{Kind: "constant", Length: dur("100s"), Rate: 0.25}, wantTotal: 25,
			check: func(c []int64) string {
				if c[3] != 1 || c[0] != 0 {
					return "want one message every fourth second"
				}
				return ""
			}},
		{name: "step", gen: Synthetic{Kind: "step", Length: dur("20s"), Rate: 1, To: 3, At: dur("10s")}, wantTotal: 40,
			check: func(c []int64) string {
				if c[9] != 1 || c[10] != 3 {
					return "want 1/s before 10s and 3/s from 10s"
				}
				return ""
			}},
		{name: "repeated bursts", gen: Synthetic{Kind: "burst", Length: dur("100s"), Rate: 0, To: 2, At: dur("10s"), Width: dur("5s"), Every: dur("50s")}, wantTotal: 20,
			check: func(c []int64) string {
				if c[10] != 2 || c[15] != 0 || c[60] != 2 || c[65] != 0 {
					return "want bursts at 10-14s and 60-64s"
				}
				return ""
			}},
		{name: "one burst", gen: Synthetic{Kind: "burst", Length: dur("100s"), Rate: 0, To: 1, At: dur("10s"), Width: dur("5s")}, wantTotal: 5},
		{name: "diurnal averages its mean", gen: Synthetic{Kind: "diurnal", Length: dur("24h"), Rate: 2, To: 1.5}, wantTotal: 172800,
			check: func(c []int64) string {
				if c[6*3600] < 3 || c[18*3600] > 1 {
					return "want a peak of 3.5/s at 6h and a trough of 0.5/s at 18h"
				}
				return ""
			}},
		{name: "poisson", gen: Synthetic{Kind: "poisson", Length: dur("10000s"), Rate: 2}, wantTotal: -1,
			check: func(c []int64) string {
				var n int64
				for _, v := range c {
					n += v
				}
				if n < 19500 || n > 20500 {
					return fmt.Sprintf("total %d, want about 20000", n)
				}
				return ""
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.gen.generate(1)
			var total int64
			for _, v := range c {
				total += v
			}
			if tc.wantTotal >= 0 && total != tc.wantTotal {
				t.Errorf("total = %d, want %d", total, tc.wantTotal)
			}
			if tc.check != nil {
				if msg := tc.check(c); msg != "" {
					t.Errorf("%s: got %v…", msg, c[:min(len(c), 20)])
				}
			}
			again := tc.gen.generate(1)
			if !slices.Equal(c, again) {
				t.Error("not deterministic for a seed")
			}
		})
	}
}
