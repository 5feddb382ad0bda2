package dashcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Dashboard is the part of a Grafana dashboard model that the checks read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is one dashboard panel; rows carry their collapsed children in Panels.
type Panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	GridPos    *GridPos   `json:"gridPos"`
	Datasource *DataRef   `json:"datasource"`
	Targets    []Target   `json:"targets"`
	Panels     []Panel    `json:"panels"`
	Field      FieldState `json:"fieldConfig"`
}

// GridPos places a panel on the dashboard's 24-column grid.
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// DataRef points at a data source, usually through the ${datasource} variable.
type DataRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string   `json:"refId"`
	Expr         string   `json:"expr"`
	LegendFormat string   `json:"legendFormat"`
	Instant      bool     `json:"instant"`
	Datasource   *DataRef `json:"datasource"`
}

// FieldState holds the panel's field defaults the snapshot uses: unit and value mappings.
type FieldState struct {
	Defaults struct {
		Unit     string    `json:"unit"`
		Mappings []Mapping `json:"mappings"`
	} `json:"defaults"`
}

// Mapping is a Grafana value mapping; only "value" mappings are read.
type Mapping struct {
	Type    string                     `json:"type"`
	Options map[string]json.RawMessage `json:"options"`
}

// Variable is a templating variable.
type Variable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query any    `json:"query"`
}

// QueryText is the variable's query: a string, or the "query" field of an object.
func (v Variable) QueryText() string {
	switch q := v.Query.(type) {
	case string:
		return q
	case map[string]any:
		s, _ := q["query"].(string)
		return s
	}
	return ""
}

// LoadDashboard decodes a dashboard and checks its structure: a uid, a Prometheus data source
// variable named "datasource", unique panel ids, a grid position for every panel, and every
// query target bound to the ${datasource} variable with a refId and an expression.
func LoadDashboard(data []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode dashboard: %w", err)
	}
	var errs []error
	if d.UID == "" {
		errs = append(errs, errors.New("dashboard has no uid"))
	}
	dsVar := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.QueryText() == "prometheus" {
			dsVar = true
		}
	}
	if !dsVar {
		errs = append(errs, errors.New(`dashboard has no datasource variable of type "datasource" and query "prometheus"`))
	}
	ids := map[int]string{}
	for _, p := range d.AllPanels() {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if prev, ok := ids[p.ID]; ok {
			errs = append(errs, fmt.Errorf("%s: id %d already used by %s", name, p.ID, prev))
		}
		ids[p.ID] = name
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			errs = append(errs, fmt.Errorf("%s: bad or missing gridPos %+v", name, p.GridPos))
		}
		if p.Title == "" {
			errs = append(errs, fmt.Errorf("%s: no title", name))
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			errs = append(errs, fmt.Errorf("%s: no queries", name))
		}
		for _, t := range p.Targets {
			if t.RefID == "" || strings.TrimSpace(t.Expr) == "" {
				errs = append(errs, fmt.Errorf("%s: target %q has no refId or no expr", name, t.RefID))
			}
			if t.Datasource == nil || t.Datasource.UID != "${datasource}" {
				errs = append(errs, fmt.Errorf("%s target %s: datasource %+v, want uid ${datasource}", name, t.RefID, t.Datasource))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &d, nil
}

// AllPanels lists every panel, rows' children included, in order.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Variable returns the templating variable with that name.
func (d *Dashboard) Variable(name string) (Variable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v, true
		}
	}
	return Variable{}, false
}

// A Query is one PromQL expression and where it came from.
type Query struct {
	// Source names the panel and refId, the variable or the rule, for messages.
	Source string
	// Expr is the expression as written (Grafana variables not yet expanded).
	Expr string
	// Alert is true for an alerting rule's condition.
	Alert bool
}

var labelValuesRe = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// Queries lists every expression of the dashboard: each panel target, and the selector inside
// each label_values(...) variable query.
func (d *Dashboard) Queries() []Query {
	var qs []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			qs = append(qs, Query{Source: fmt.Sprintf("panel %q target %s", p.Title, t.RefID), Expr: t.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		if m := labelValuesRe.FindStringSubmatch(v.QueryText()); m != nil {
			qs = append(qs, Query{Source: fmt.Sprintf("variable %q", v.Name), Expr: m[1]})
		}
	}
	return qs
}

var varRe = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\[\[([A-Za-z0-9_]+)\]\]|\$([A-Za-z_][A-Za-z0-9_]*)`)

// Expand replaces Grafana's template variables with values that keep the expression valid
// PromQL and select everything: range variables become 1m, any other variable ".*" (the
// dashboard only uses them inside =~ matchers, which LoadDashboard's callers check by running
// the expanded expression).
func Expand(expr string) string { return ExpandRate(expr, "1m") }

// ExpandRate is Expand with $__rate_interval, $__interval and $__range set to window (a
// PromQL duration such as "10s"): Grafana derives them from the time range shown, and a short
// run needs a short window.
func ExpandRate(expr, window string) string {
	return varRe.ReplaceAllStringFunc(expr, func(m string) string {
		sm := varRe.FindStringSubmatch(m)
		switch sm[1] + sm[2] + sm[3] {
		case "__rate_interval", "__interval", "__range":
			return window
		case "__interval_ms", "__range_ms":
			return "60000"
		case "__range_s":
			return "60"
		}
		return ".*"
	})
}
