package dashcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// SnapshotOptions says which time range to draw and how big.
type SnapshotOptions struct {
	Start, End time.Time
	// Step is the range query resolution; 0 means (End-Start)/200.
	Step time.Duration
	// RateInterval replaces $__rate_interval (see ExpandRate); "" means 1m.
	RateInterval string
	// Columns of panels; 0 means 2.
	Columns int
	// PanelWidth and PanelHeight size one panel; 0 means 16 cm by 8 cm.
	PanelWidth, PanelHeight vg.Length
}

// PanelData is what one panel showed in a snapshot: its series per target.
type PanelData struct {
	Panel  Panel
	Series [][]Series // per target, in order
}

// Snapshot runs every panel's queries over a time range (Grafana variables expanded to
// "everything") and draws the panels as a grid of line plots in dashboard order, as a PNG.
// State-timeline panels draw their value codes with the value mappings as tick labels. It
// returns the data it drew, so callers can check that panels are not empty.
func Snapshot(ctx context.Context, c Client, d *Dashboard, o SnapshotOptions) ([]byte, []PanelData, error) {
	if !o.End.After(o.Start) {
		return nil, nil, fmt.Errorf("snapshot: end %v is not after start %v", o.End, o.Start)
	}
	if o.Step <= 0 {
		o.Step = max(o.End.Sub(o.Start)/200, time.Second)
	}
	if o.RateInterval == "" {
		o.RateInterval = "1m"
	}
	if o.Columns <= 0 {
		o.Columns = 2
	}
	if o.PanelWidth <= 0 {
		o.PanelWidth = 16 * vg.Centimeter
	}
	if o.PanelHeight <= 0 {
		o.PanelHeight = 8 * vg.Centimeter
	}
	var data []PanelData
	for _, p := range d.AllPanels() {
		if p.Type == "row" {
			continue
		}
		pd := PanelData{Panel: p}
		for _, t := range p.Targets {
			ss, err := c.Range(ctx, ExpandRate(t.Expr, o.RateInterval), o.Start, o.End, o.Step)
			if err != nil {
				return nil, nil, fmt.Errorf("panel %q target %s: %w", p.Title, t.RefID, err)
			}
			pd.Series = append(pd.Series, ss)
		}
		data = append(data, pd)
	}
	rows := (len(data) + o.Columns - 1) / o.Columns
	img := vgimg.New(o.PanelWidth*vg.Length(o.Columns), o.PanelHeight*vg.Length(rows))
	dc := draw.New(img)
	tiles := draw.Tiles{Cols: o.Columns, Rows: rows, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	for i, pd := range data {
		pl, err := drawPanel(pd, o)
		if err != nil {
			return nil, nil, err
		}
		pl.Draw(tiles.At(dc, i%o.Columns, i/o.Columns))
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, nil, fmt.Errorf("snapshot: encode png: %w", err)
	}
	return buf.Bytes(), data, nil
}

var legendRe = regexp.MustCompile(`\{\{\s*([A-Za-z0-9_]+)\s*\}\}`)

// legend renders a Grafana legendFormat for one series; "" gives the series' labels.
func legend(format string, labels map[string]string) string {
	if format == "" {
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s := ""
		for _, k := range keys {
			s += k + "=" + labels[k] + " "
		}
		return s
	}
	return legendRe.ReplaceAllStringFunc(format, func(m string) string {
		return labels[legendRe.FindStringSubmatch(m)[1]]
	})
}

func drawPanel(pd PanelData, o SnapshotOptions) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pd.Panel.Title
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.X.Tick.Marker = plot.TimeTicks{Format: "15:04:05"}
	p.X.Min, p.X.Max = float64(o.Start.Unix()), float64(o.End.Unix())
	p.Y.Label.Text = pd.Panel.Field.Defaults.Unit
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(7)
	p.Legend.ThumbnailWidth = vg.Points(10)
	p.Add(plotter.NewGrid())
	if ticks := mappingTicks(pd.Panel); ticks != nil {
		p.Y.Tick.Marker = ticks
		p.Y.Min, p.Y.Max = 0.5, float64(len(ticks))+0.5
	}
	n := 0
	for ti, ss := range pd.Series {
		for _, s := range ss {
			xys := make(plotter.XYs, 0, len(s.Points))
			for _, pt := range s.Points {
				if math.IsNaN(pt.V) || math.IsInf(pt.V, 0) {
					continue
				}
				xys = append(xys, plotter.XY{X: float64(pt.T.Unix()), Y: pt.V})
			}
			if len(xys) == 0 {
				continue
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return nil, fmt.Errorf("panel %q: %w", pd.Panel.Title, err)
			}
			l.Color = plotutil.Color(n)
			l.Dashes = plotutil.Dashes(ti)
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(legend(pd.Panel.Targets[ti].LegendFormat, s.Labels), l)
			n++
		}
	}
	if n == 0 {
		p.Title.Text += " (no data)"
	}
	return p, nil
}

// mappingTicks turns a panel's value mappings ("1" -> "queue", ...) into Y axis labels.
func mappingTicks(p Panel) plot.ConstantTicks {
	var ticks plot.ConstantTicks
	for _, m := range p.Field.Defaults.Mappings {
		if m.Type != "value" {
			continue
		}
		for k, raw := range m.Options {
			v, err := strconv.ParseFloat(k, 64)
			if err != nil {
				continue
			}
			var opt struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(raw, &opt); err != nil || opt.Text == "" {
				continue
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: opt.Text})
		}
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i].Value < ticks[j].Value })
	return ticks
}
