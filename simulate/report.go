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
	alloc := float64(r.model.allocatableMemory()) / (1 << 30)
	plots := []struct {
		file, title, y string
		series         func(s sample) float64
		peak           bool                   // bin by maximum rather than mean
		ref            func(s sample) float64 // a dashed reference line, or nil
		refName        string
	}{
		{"queue.png", "ready messages in the queue", "messages", func(s sample) float64 { return float64(s.queue) }, true, nil, ""},
		{"replicas.png", "worker pods on nodes", "pods", func(s sample) float64 { return float64(s.running) }, false,
			func(s sample) float64 { return float64(s.demand) }, "demand"},
		{"memory.png", "cluster memory use", "GiB", func(s sample) float64 { return float64(s.memUsed) / (1 << 30) }, false,
			func(sample) float64 { return alloc }, "allocatable"},
		{"memory-node.png", "memory use of the fullest node", "% of its allocatable", func(s sample) float64 { return s.fullest }, true,
			func(sample) float64 { return 100 }, "allocatable"},
	}
	for _, pl := range plots {
		p := plot.New()
		p.Title.Text = r.Scenario + ": " + pl.title
		p.X.Label.Text = "hours"
		p.Y.Label.Text = pl.y
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		add := func(name string, tl []sample, f func(sample) float64, peak bool, c color.Color, width vg.Length, dashed bool) error {
			l, err := plotter.NewLine(binned(tl, f, peak))
			if err != nil {
				return fmt.Errorf("plot %s: %w", pl.file, err)
			}
			l.Color, l.Width = c, width
			if dashed {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(name, l)
			return nil
		}
		// Draw headroom last, on top.
		order := make([]int, 0, len(r.Policies))
		for i, res := range r.Policies {
			if res.Name != PolicyHeadroom {
				order = append(order, i)
			}
		}
		for i, res := range r.Policies {
			if res.Name == PolicyHeadroom {
				order = append(order, i)
			}
		}
		for _, i := range order {
			name := r.Policies[i].Name
			width := vg.Points(1.2)
			if name == PolicyHeadroom {
				width = vg.Points(2)
			}
			if err := add(name, r.timelines[i], pl.series, pl.peak, policyColor(name), width, false); err != nil {
				return err
			}
		}
		if pl.ref != nil && len(r.timelines) > 0 {
			if err := add(pl.refName, r.timelines[0], pl.ref, false, color.Black, vg.Points(1), true); err != nil {
				return err
			}
		}
		if err := p.Save(30*vg.Centimeter, 12*vg.Centimeter, filepath.Join(dir, pl.file)); err != nil {
			return fmt.Errorf("plot %s: %w", pl.file, err)
		}
	}
	return r.writeMarkdown(filepath.Join(dir, "report.md"))
}

// plotPoints is about how many points a plotted series has: a long timeline is binned (mean,
// or maximum for peaks) so that the lines stay readable.
const plotPoints = 1500

func binned(tl []sample, f func(sample) float64, peak bool) plotter.XYs {
	per := max(1, (len(tl)+plotPoints-1)/plotPoints)
	xys := make(plotter.XYs, 0, len(tl)/per+1)
	for i := 0; i < len(tl); i += per {
		j := min(i+per, len(tl))
		v := 0.0
		for _, s := range tl[i:j] {
			if peak {
				v = max(v, f(s))
			} else {
				v += f(s)
			}
		}
		if !peak {
			v /= float64(j - i)
		}
		xys = append(xys, plotter.XY{X: float64(tl[i].t) / 3600, Y: v})
	}
	return xys
}

func policyColor(name string) color.Color {
	switch name {
	case PolicyHeadroom:
		return color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	case PolicyKEDADefault:
		return color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	case PolicyKEDATuned:
		return color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	case PolicyCPUHPA:
		return color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	case PolicyFixed:
		return color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
	}
	return color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
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
deleted by a scale-down and still holding messages when their termination grace period ended
(the messages are requeued). θ and τ are the SPEC
elasticity metrics against the demand d(t) = min(max, ⌈arrival rate × mean service time⌉),
supply being the Ready workers; instability is the share of seconds in which supply and demand
did not move in the same direction. ` + "`bound`" + ` is every worker that fits, Ready from the start: no
policy waits less.

## Queue depth

![queue depth](queue.png)

## Worker pods

![replicas](replicas.png)

## Memory

![cluster memory](memory.png)

![fullest node](memory-node.png)

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
