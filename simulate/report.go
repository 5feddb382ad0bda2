package simulate

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

var tableHeader = []string{"policy", "wait p50", "p95", "p99", "max", "drain max", "replica·s", "pending·s", "overcommit·s", "busy killed", "scale actions", "θU %", "θO %", "τU %", "τO %", "instability %"}

func (res Result) cells() []string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	p := func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
	return []string{
		res.Name, f(res.WaitP50) + "s", f(res.WaitP95) + "s", f(res.WaitP99) + "s", f(res.WaitMax) + "s", f(res.DrainMax) + "s",
		f(res.ReplicaSeconds), f(res.PendingPodSeconds), f(res.OvercommitSeconds),
		strconv.FormatInt(res.BusyKilled, 10), strconv.FormatInt(res.ScaleActions, 10),
		p(res.ThetaU), p(res.ThetaO), p(res.TauU), p(res.TauO), p(res.Instability),
	}
}

// WriteTable writes the report as an aligned text table.
func (r *Report) WriteTable(w io.Writer) error {
	if m := r.model; m != nil {
		fmt.Fprintf(w, "scenario %s: %s, %d messages over %s (+%s drain), mean service %.0fs\n\n",
			r.Scenario, m.arr.source, m.arr.total, fmtSeconds(int64(len(m.arr.counts))), fmtSeconds(m.horizon-int64(len(m.arr.counts))), m.arr.meanSvc)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t")+"\t")
	for _, res := range r.Policies {
		fmt.Fprintln(tw, strings.Join(res.cells(), "\t")+"\t")
	}
	return tw.Flush()
}

func fmtSeconds(s int64) string {
	switch {
	case s%3600 == 0 && s > 0:
		return strconv.FormatInt(s/3600, 10) + "h"
	case s%60 == 0 && s > 0:
		return strconv.FormatInt(s/60, 10) + "m"
	}
	return strconv.FormatInt(s, 10) + "s"
}

// WriteOutputs writes, into dir, a timeline CSV per policy, the plots and report.md.
func (r *Report) WriteOutputs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	for i, res := range r.Policies {
		if err := r.writeTimeline(filepath.Join(dir, "timeline-"+res.Name+".csv"), i); err != nil {
			return err
		}
	}
	plots := []struct {
		file, title, y string
		series         func(s sample) float64
		allocLine      bool
		withDemand     bool
	}{
		{"queue.png", "Ready messages in the queue", "messages", func(s sample) float64 { return float64(s.queue) }, false, false},
		{"replicas.png", "Worker pods on nodes (dashed: demand)", "pods", func(s sample) float64 { return float64(s.running) }, false, true},
		{"memory.png", "Cluster memory use (dashed: allocatable)", "GiB", func(s sample) float64 { return float64(s.memUsed) / (1 << 30) }, true, false},
	}
	for _, pl := range plots {
		p := plot.New()
		p.Title.Text = r.Scenario + ": " + pl.title
		p.X.Label.Text = "hours"
		p.Y.Label.Text = pl.y
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		for i, res := range r.Policies {
			tl := r.timelines[i]
			xys := make(plotter.XYs, len(tl))
			for k, s := range tl {
				xys[k].X, xys[k].Y = float64(s.t)/3600, pl.series(s)
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("plot %s: %w", pl.file, err)
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1)
			p.Add(l)
			p.Legend.Add(res.Name, l)
		}
		if len(r.timelines) > 0 && (pl.withDemand || pl.allocLine) {
			tl := r.timelines[0]
			xys := make(plotter.XYs, len(tl))
			for k, s := range tl {
				xys[k].X = float64(s.t) / 3600
				if pl.withDemand {
					xys[k].Y = float64(s.demand)
				} else {
					xys[k].Y = float64(r.model.allocatableMemory()) / (1 << 30)
				}
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return fmt.Errorf("plot %s: %w", pl.file, err)
			}
			l.Color = color.Black
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			if pl.withDemand {
				p.Legend.Add("demand", l)
			} else {
				p.Legend.Add("allocatable", l)
			}
		}
		if err := p.Save(30*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, pl.file)); err != nil {
			return fmt.Errorf("plot %s: %w", pl.file, err)
		}
	}
	return r.writeMarkdown(filepath.Join(dir, "report.md"))
}

func (m *model) allocatableMemory() int64 {
	var t int64
	for _, n := range m.nodes {
		t += n.allocatable.Memory
	}
	return t
}

func (r *Report) writeTimeline(file string, i int) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write timeline: %w", cerr)
		}
	}()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"t_s", "arrivals", "queue_ready", "unacked", "desired", "running", "ready", "pending", "busy", "demand",
		"cpu_used_m", "memory_used_bytes", "memory_requested_bytes", "memory_allocatable_bytes", "overcommitted_nodes"})
	alloc := strconv.FormatInt(r.model.allocatableMemory(), 10)
	d := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, s := range r.timelines[i] {
		_ = w.Write([]string{d(s.t), d(s.arrivals), d(s.queue), d(s.unacked), d(int64(s.desired)), d(int64(s.running)),
			d(int64(s.ready)), d(int64(s.pending)), d(int64(s.busy)), d(int64(s.demand)),
			d(s.cpuUsed), d(s.memUsed), d(s.allocated), alloc, d(s.overcommitted)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write timeline: %w", err)
	}
	return nil
}

func (r *Report) writeMarkdown(file string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Simulation: %s\n\n", r.Scenario)
	if m := r.model; m != nil {
		if d := m.sc.Description; d != "" {
			fmt.Fprintf(&b, "%s\n\n", d)
		}
		fmt.Fprintf(&b, "Arrivals: %s, %d messages over %s, then %s to drain; mean service time %.0f s; %d nodes.\n\n",
			m.arr.source, m.arr.total, fmtSeconds(int64(len(m.arr.counts))), fmtSeconds(m.horizon-int64(len(m.arr.counts))), m.arr.meanSvc, len(m.nodes))
	}
	b.WriteString("| " + strings.Join(tableHeader, " | ") + " |\n|")
	for range tableHeader {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, res := range r.Policies {
		b.WriteString("| " + strings.Join(res.cells(), " | ") + " |\n")
	}
	b.WriteString(`
Waits run from a message's arrival to the start of the service that completed it. Drain max is
the longest stretch with ready messages in the queue. Overcommit·s is the time during which at
least one node used more memory than it has (at risk of OOM kills). Busy killed counts workers
removed by scale-down while holding messages (the messages are requeued). θ and τ are the SPEC
elasticity metrics against the demand d(t) = min(max, ⌈arrival rate × mean service time⌉),
supply being the Ready workers; instability is the share of seconds in which supply and demand
did not move in the same direction. ` + "`bound`" + ` is every worker that fits, Ready from the start: no
policy waits less.

## Queue depth

![queue depth](queue.png)

## Worker pods

![replicas](replicas.png)

## Cluster memory

![memory](memory.png)

Timelines: `)
	for i, res := range r.Policies {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "[%s](timeline-%s.csv)", res.Name, res.Name)
	}
	b.WriteString(".\n")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
