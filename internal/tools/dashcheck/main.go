// Command dashcheck parses PromQL expressions with Prometheus's own parser and reports, for
// each, the parse error or the metric names and vector selectors it reads.
//
// It is its own module because github.com/prometheus/prometheus requires newer Kubernetes
// libraries than the headroom module pins; package internal/dashcheck runs it with `go run`.
//
// Input on stdin: a JSON array of {"id", "expr"}. Output on stdout: a JSON array of
// {"id", "error", "metrics", "selectors"} in the same order. It exits non-zero only when the
// input cannot be read.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type query struct {
	ID   string `json:"id"`
	Expr string `json:"expr"`
}

type result struct {
	ID        string   `json:"id"`
	Error     string   `json:"error,omitempty"`
	Metrics   []string `json:"metrics,omitempty"`
	Selectors []string `json:"selectors,omitempty"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dashcheck:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	var qs []query
	if err := json.NewDecoder(in).Decode(&qs); err != nil {
		return fmt.Errorf("read queries: %w", err)
	}
	rs := make([]result, 0, len(qs))
	for _, q := range qs {
		rs = append(rs, check(q))
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rs)
}

func check(q query) result {
	r := result{ID: q.ID}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q.Expr)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	metrics := map[string]bool{}
	selectors := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors[vs.String()] = true
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			r.Error = fmt.Sprintf("selector %s names no metric", vs)
		}
		metrics[name] = true
		return nil
	})
	r.Metrics = sortedKeys(metrics)
	r.Selectors = sortedKeys(selectors)
	return r
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
