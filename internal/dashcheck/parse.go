package dashcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// Parsed is a Query after Prometheus's parser has read its expanded expression.
type Parsed struct {
	Query
	// Err is the parser's message, "" when the expression parses.
	Err string
	// Metrics are the metric names the expression reads.
	Metrics []string
	// Selectors are its vector selectors, each valid PromQL on its own.
	Selectors []string
}

// toolDir is the directory of the dashcheck command's module, found from this file's path:
// the checks run from a source checkout.
func toolDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locate internal/tools/dashcheck: no caller information")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "tools", "dashcheck")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("locate internal/tools/dashcheck: %w", err)
	}
	return dir, nil
}

// Parse expands and parses every query with Prometheus's PromQL parser. The parser runs as a
// separate command (go run in internal/tools/dashcheck); when its module cannot be
// downloaded or built the error wraps lab.ErrUnavailable.
func Parse(ctx context.Context, qs []Query) ([]Parsed, error) {
	dir, err := toolDir()
	if err != nil {
		return nil, err
	}
	type in struct {
		ID   string `json:"id"`
		Expr string `json:"expr"`
	}
	ins := make([]in, len(qs))
	for i, q := range qs {
		ins[i] = in{ID: strconv.Itoa(i), Expr: Expand(q.Expr)}
	}
	body, err := json.Marshal(ins)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(body), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "dashcheck:") {
			return nil, fmt.Errorf("run dashcheck: %v: %s", err, msg)
		}
		// The go tool failed: no network for the module proxy, or no go on PATH.
		return nil, fmt.Errorf("build internal/tools/dashcheck: %v: %s: %w", err, msg, lab.ErrUnavailable)
	}
	var outs []struct {
		ID        string   `json:"id"`
		Error     string   `json:"error"`
		Metrics   []string `json:"metrics"`
		Selectors []string `json:"selectors"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &outs); err != nil {
		return nil, fmt.Errorf("decode dashcheck output: %w", err)
	}
	if len(outs) != len(qs) {
		return nil, fmt.Errorf("dashcheck answered %d results for %d queries", len(outs), len(qs))
	}
	ps := make([]Parsed, len(qs))
	for i, o := range outs {
		ps[i] = Parsed{Query: qs[i], Err: o.Error, Metrics: o.Metrics, Selectors: o.Selectors}
	}
	return ps, nil
}

// Unknown returns, for each parsed query, the metrics it reads that are not in exported,
// formatted as "source: metric"; empty when every query names only exported metrics.
// Metrics in builtin (such as "up", which Prometheus itself writes) are always allowed.
func Unknown(ps []Parsed, exported map[string]bool, builtin ...string) []string {
	allowed := map[string]bool{}
	for _, b := range builtin {
		allowed[b] = true
	}
	var out []string
	for _, p := range ps {
		for _, m := range p.Metrics {
			if !exported[m] && !allowed[m] {
				out = append(out, fmt.Sprintf("%s: metric %q is not exported by the scaler", p.Source, m))
			}
		}
	}
	sort.Strings(out)
	return out
}
