package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/headroom-autoscaler/headroom/simulate"
)

const simulateUsage = `Usage: scaler simulate [--scenario FILE] [--trace FILE] [--trace-format counts|events] [--json] [--out DIR]

Replays a scenario's arrivals through headroom's decision code and through the baselines
(keda-default, keda-tuned, cpu-hpa, fixed, bound) on the same modelled cluster, and prints
one row of scores per policy.

The scenario is a YAML file, or the name of a built-in scenario (%s; default %s).
--trace replaces the scenario's arrivals with a trace file (period,count or one row per
request with a TIMESTAMP column); the scenario's arrivals.scale and service still apply.

Flags:
`

// runSimulate is `scaler simulate`.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scaler simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", simulate.DefaultScenario, "scenario `FILE` (YAML), or the name of a built-in scenario")
	trace := fs.String("trace", "", "replay this trace `FILE` instead of the scenario's arrivals")
	format := fs.String("trace-format", "", "format of --trace: counts or events (default: detected from the header)")
	asJSON := fs.Bool("json", false, "print one JSON document instead of the table")
	out := fs.String("out", "", "write timelines (CSV), plots (PNG) and report.md into `DIR`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, simulateUsage, strings.Join(simulate.ShippedScenarios(), ", "), simulate.DefaultScenario)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	switch *format {
	case "", simulate.FormatCounts, simulate.FormatEvents:
	default:
		return fmt.Errorf("--trace-format %q: want counts or events: %w", *format, errUsage)
	}
	if *format != "" && *trace == "" {
		return fmt.Errorf("--trace-format %q needs --trace: %w", *format, errUsage)
	}
	sc, err := loadScenario(*scenario)
	if err != nil {
		return err
	}
	opt := simulate.Options{Trace: *trace, TraceFormat: *format, Progress: progress(stderr)}
	rep, err := simulate.Run(ctx, sc, opt)
	if opt.Progress != nil {
		opt.Progress("", -1)
	}
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if *out != "" {
		if err := rep.WriteOutputs(*out); err != nil {
			return err
		}
	}
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(stdout, "\nreport: %s\n", strings.TrimSuffix(*out, "/")+"/report.md")
	}
	return nil
}

// loadScenario reads a scenario file, or a built-in scenario when no file has that name.
func loadScenario(name string) (*simulate.Scenario, error) {
	if _, err := os.Stat(name); err == nil {
		return simulate.LoadScenario(name)
	}
	sc, ok, err := simulate.LoadShipped(name)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("scenario %q: no such file, and no built-in scenario by that name (built in: %s): %w",
			name, strings.Join(simulate.ShippedScenarios(), ", "), errUsage)
	}
	return sc, nil
}

// progress returns a progress indicator for stderr when it is a terminal: it appears once the
// run has taken more than two seconds. Called with done < 0, it clears its line.
func progress(stderr io.Writer) func(string, float64) {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	start, shown := time.Now(), false
	return func(policy string, done float64) {
		switch {
		case done < 0:
			if shown {
				fmt.Fprint(f, "\r\033[K")
			}
		case time.Since(start) > 2*time.Second:
			shown = true
			fmt.Fprintf(f, "\rsimulating %-12s %3.0f%%", policy, 100*done)
		}
	}
}
