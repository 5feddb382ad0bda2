package dashcheck

import (
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"
)

// RuleGroups is the content of a Prometheus rules file, and the spec of a PrometheusRule.
type RuleGroups struct {
	Groups []RuleGroup `json:"groups"`
}

// RuleGroup is one group of rules.
type RuleGroup struct {
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// LoadRules decodes a rules file. Every rule must have an expr and exactly one of alert and
// record; promtool checks the rest.
func LoadRules(data []byte) (*RuleGroups, error) {
	var g RuleGroups
	if err := yaml.UnmarshalStrict(data, &g); err != nil {
		return nil, fmt.Errorf("decode rules: %w", err)
	}
	if len(g.Groups) == 0 {
		return nil, errors.New("decode rules: no groups")
	}
	for _, grp := range g.Groups {
		for i, r := range grp.Rules {
			if r.Expr == "" || (r.Alert == "") == (r.Record == "") {
				return nil, fmt.Errorf("group %q rule %d (%q%q): want an expr and exactly one of alert and record", grp.Name, i, r.Alert, r.Record)
			}
		}
	}
	return &g, nil
}

// Queries lists every rule's expression.
func (g *RuleGroups) Queries() []Query {
	var qs []Query
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			qs = append(qs, Query{Source: fmt.Sprintf("rule %q", name), Expr: r.Expr, Alert: r.Alert != ""})
		}
	}
	return qs
}
