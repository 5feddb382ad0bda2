package dashcheck

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// ExpositionNames reads a Prometheus text exposition and returns the name of every sample
// (histograms contribute their _bucket, _count and _sum series) and of every family declared
// with # TYPE.
func ExpositionNames(r io.Reader) (map[string]bool, error) {
	names := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		if strings.HasPrefix(s, "#") {
			f := strings.Fields(s)
			if len(f) >= 3 && f[1] == "TYPE" {
				names[f[2]] = true
			}
			continue
		}
		end := strings.IndexAny(s, "{ \t")
		if end <= 0 {
			return nil, fmt.Errorf("exposition line %d: no metric name in %q", line, s)
		}
		names[s[:end]] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read exposition: %w", err)
	}
	return names, nil
}
