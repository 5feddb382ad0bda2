package simulate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Trace formats.
const (
	FormatCounts = "counts" // period,count: requests per period (second or minute)
	FormatEvents = "events" // one row per request: timestamp[,size columns...]
)

// Trace is a request arrival series at one-second resolution, as read from a file or made by
// a generator.
type Trace struct {
	Name  string
	Start time.Time // instant of second 0 (zero for synthetic traces)
	// Counts[i] is the number of requests that arrived during second i.
	Counts []int64
	// Columns and Sizes are set for event traces: the size columns in file order, and for each
	// request (in arrival order) its value in each column (Sizes[r][c]).
	Columns []string
	Sizes   [][]float64
}

// Requests is the total number of requests in the trace.
func (t *Trace) Requests() int64 {
	var n int64
	for _, c := range t.Counts {
		n += c
	}
	return n
}

// DetectFormat looks at the header line of a trace and returns FormatCounts for a
// "period,count" header and FormatEvents for a header that starts with a timestamp column.
func DetectFormat(header string) (string, error) {
	cols := splitHeader(header)
	switch {
	case len(cols) == 2 && strings.EqualFold(cols[0], "period") && strings.EqualFold(cols[1], "count"):
		return FormatCounts, nil
	case len(cols) >= 1 && isTimestampColumn(cols[0]):
		return FormatEvents, nil
	}
	return "", fmt.Errorf("header %q: want \"period,count\" (counts) or a first column named TIMESTAMP, timestamp or time (events)", strings.TrimSpace(header))
}

func isTimestampColumn(c string) bool {
	switch strings.ToLower(c) {
	case "timestamp", "time":
		return true
	}
	return false
}

func splitHeader(line string) []string {
	line = strings.TrimPrefix(strings.TrimSpace(line), "\ufeff")
	cols := strings.Split(line, ",")
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	return cols
}

// ReadTrace reads a trace in the given format ("" detects it from the header). name is used in
// error messages, which name the file, the line and the bad value.
func ReadTrace(r io.Reader, name, format string) (*Trace, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	header, err := br.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && header != "") {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty trace", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	detected, derr := DetectFormat(header)
	switch {
	case format == "" && derr != nil:
		return nil, fmt.Errorf("%s:1: %w", name, derr)
	case format == "":
		format = detected
	case format != FormatCounts && format != FormatEvents:
		return nil, fmt.Errorf("trace format %q: want %s or %s", format, FormatCounts, FormatEvents)
	}
	t := &Trace{Name: name}
	if format == FormatCounts {
		err = readCounts(br, name, header, t)
	} else {
		err = readEvents(br, name, header, t)
	}
	if err != nil {
		return nil, err
	}
	if len(t.Counts) == 0 {
		return nil, fmt.Errorf("%s: empty trace: no data rows after the header", name)
	}
	return t, nil
}

// lines calls fn for each non-empty line after the header, with its 1-based line number.
func lines(br *bufio.Reader, name string, fn func(n int, line []byte) error) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	n := 1
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return nil
}

// Timestamps: a date-time (UTC) with optional fraction, or a number of seconds.
var timeLayouts = []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999"}

// parseInstant returns seconds since the Unix epoch (for date-times) or the number as given.
func parseInstant(s string) (float64, bool, error) {
	if len(s) >= 19 && s[4] == '-' && s[10] == ' ' {
		// The common layout, parsed without time.Parse: 2006-01-02 15:04:05[.fraction].
		if sec, ok := parseDateTime(s); ok {
			return sec, true, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return f, false, nil
	}
	for _, l := range timeLayouts {
		if tm, err := time.Parse(l, s); err == nil {
			return float64(tm.UnixNano()) / 1e9, true, nil
		}
	}
	return 0, false, fmt.Errorf("not a timestamp (want YYYY-MM-DD HH:MM:SS[.fraction] or seconds)")
}

// parseDateTime parses "YYYY-MM-DD HH:MM:SS[.fraction]" (UTC) into Unix seconds.
func parseDateTime(s string) (float64, bool) {
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if s[7] != '-' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 7)
	d, ok3 := num(8, 10)
	h, ok4 := num(11, 13)
	mi, ok5 := num(14, 16)
	se, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 {
		return 0, false
	}
	frac := 0.0
	if len(s) > 19 {
		if s[19] != '.' || len(s) == 20 {
			return 0, false
		}
		f, err := strconv.ParseFloat("0"+s[19:], 64)
		if err != nil {
			return 0, false
		}
		frac = f
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, 0, time.UTC)
	if t.Day() != d {
		return 0, false // 31 April and the like
	}
	return float64(t.Unix()) + frac, true
}

func instantTime(sec float64, isDate bool) time.Time {
	if !isDate {
		return time.Time{}
	}
	whole := math.Floor(sec)
	return time.Unix(int64(whole), int64((sec-whole)*1e9)).UTC()
}

func readCounts(br *bufio.Reader, name, header string, t *Trace) error {
	cols := splitHeader(header)
	want := []string{"period", "count"}
	for i, c := range cols {
		if i >= len(want) || !strings.EqualFold(c, want[i]) {
			return fmt.Errorf("%s:1: unknown column %q: a counts trace has the columns period,count", name, c)
		}
	}
	if len(cols) != 2 {
		return fmt.Errorf("%s:1: header %q: a counts trace has the columns period,count", name, strings.TrimSpace(header))
	}
	type row struct {
		at    float64
		count int64
	}
	var rows []row
	var isDate bool
	err := lines(br, name, func(n int, line []byte) error {
		per, cnt, ok := strings.Cut(string(line), ",")
		if !ok || strings.Contains(cnt, ",") {
			return fmt.Errorf("%s:%d: %q: want 2 fields (period,count), got %d", name, n, line, strings.Count(string(line), ",")+1)
		}
		f := [2]string{per, cnt}
		at, date, err := parseInstant(strings.TrimSpace(f[0]))
		if err != nil {
			return fmt.Errorf("%s:%d: period %q: %w", name, n, f[0], err)
		}
		if len(rows) == 0 {
			isDate = date
		}
		c, err := strconv.ParseInt(strings.TrimSpace(f[1]), 10, 64)
		if err != nil || c < 0 {
			return fmt.Errorf("%s:%d: count %q: want a non-negative integer", name, n, f[1])
		}
		if k := len(rows); k > 0 && at <= rows[k-1].at {
			return fmt.Errorf("%s:%d: period %q: not after the previous row's: rows must be sorted by period with no duplicates", name, n, f[0])
		}
		rows = append(rows, row{at, c})
		return nil
	})
	if err != nil || len(rows) == 0 {
		return err
	}
	// The period is the smallest gap between rows (1 s or 60 s in practice); a count is spread
	// evenly over the seconds of its period.
	step := 1.0
	if len(rows) > 1 {
		step = math.Inf(1)
		for i := 1; i < len(rows); i++ {
			step = min(step, rows[i].at-rows[i-1].at)
		}
	}
	if step < 1 || step != math.Trunc(step) {
		return fmt.Errorf("%s: period spacing %vs: a counts trace needs whole-second periods", name, step)
	}
	per := int64(step)
	first := rows[0].at
	last := int64(rows[len(rows)-1].at-first) + per
	if last > maxTraceSeconds {
		return fmt.Errorf("%s: span of %d s is longer than the %d s the simulator accepts", name, last, maxTraceSeconds)
	}
	t.Counts = make([]int64, last)
	for _, r := range rows {
		base := int64(r.at - first)
		for k := int64(0); k < per; k++ {
			// Bresenham: second k gets ⌊c(k+1)/per⌋ − ⌊ck/per⌋.
			t.Counts[base+k] = r.count*(k+1)/per - r.count*k/per
		}
	}
	t.Start = instantTime(first, isDate)
	return nil
}

// maxTraceSeconds bounds a trace's span (100 days, the per-tick state of a run is a few
// tens of bytes per second) so that a typo in a timestamp cannot allocate without bound.
const maxTraceSeconds = 100 * 24 * 3600

func readEvents(br *bufio.Reader, name, header string, t *Trace) error {
	cols := splitHeader(header)
	if len(cols) == 0 || !isTimestampColumn(cols[0]) {
		return fmt.Errorf("%s:1: unknown column %q: an events trace starts with a TIMESTAMP column", name, cols[0])
	}
	seen := map[string]bool{}
	for _, c := range cols[1:] {
		if c == "" || seen[c] {
			return fmt.Errorf("%s:1: column %q: empty or repeated column name", name, c)
		}
		seen[c] = true
	}
	t.Columns = cols[1:]
	var ats []float64
	var isDate bool
	err := lines(br, name, func(n int, line []byte) error {
		f := strings.Split(string(line), ",")
		if len(f) != len(cols) {
			return fmt.Errorf("%s:%d: %q: want %d fields (%s), got %d", name, n, line, len(cols), strings.Join(cols, ","), len(f))
		}
		at, date, err := parseInstant(strings.TrimSpace(f[0]))
		if err != nil {
			return fmt.Errorf("%s:%d: timestamp %q: %w", name, n, f[0], err)
		}
		if len(ats) == 0 {
			isDate = date
		} else if at < ats[len(ats)-1] {
			return fmt.Errorf("%s:%d: timestamp %q: earlier than the previous row's: rows must be sorted by time", name, n, f[0])
		}
		if at-firstOr(ats, at) >= maxTraceSeconds {
			return fmt.Errorf("%s:%d: timestamp %q: more than %d s after the first row", name, n, f[0], maxTraceSeconds)
		}
		sz := make([]float64, len(cols)-1)
		for i := range sz {
			v, err := strconv.ParseFloat(strings.TrimSpace(f[i+1]), 64)
			if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("%s:%d: %s %q: want a non-negative number", name, n, cols[i+1], f[i+1])
			}
			sz[i] = v
		}
		ats = append(ats, at)
		t.Sizes = append(t.Sizes, sz)
		return nil
	})
	if err != nil || len(ats) == 0 {
		return err
	}
	first := math.Floor(ats[0])
	t.Counts = make([]int64, int64(ats[len(ats)-1]-first)+1)
	for _, a := range ats {
		t.Counts[int64(a-first)]++
	}
	t.Start = instantTime(first, isDate)
	return nil
}

func firstOr(xs []float64, def float64) float64 {
	if len(xs) == 0 {
		return def
	}
	return xs[0]
}
