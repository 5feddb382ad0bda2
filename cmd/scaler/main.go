// Command scaler is headroom's one binary: `scaler serve` runs the KEDA external scaler,
// `scaler simulate` replays traces through the same decision code, `scaler check` checks
// ScaledObject manifests offline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module
// version from the build information is used.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

const usage = `Usage: scaler <command> [flags]

Commands:
  serve      run the KEDA external scaler (gRPC for KEDA, HTTP for /metrics and probes)
  simulate   replay arrival traces through the decision code and score policies
  check      check ScaledObject manifests against what the scaler and the HPA will make of them
  version    print the version

Run 'scaler <command> --help' for the flags of a command.
`

func main() {
	ctx, stop := signalContext()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "scaler:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "scaler:", err)
		os.Exit(1)
	}
}

// signalContext returns a context cancelled by the first SIGTERM or SIGINT; a second one
// exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-ch:
			fmt.Fprintf(os.Stderr, "scaler: second %v: exiting now\n", s)
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}

// errUsage marks a command line that could not be understood (exit status 2).
var errUsage = errors.New("run with --help for usage")

// run dispatches to a command. It returns flag.ErrHelp after printing help.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given: %w", errUsage)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "simulate":
		return runSimulate(ctx, args[1:], stdout, stderr)
	case "check":
		return runCheck(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "scaler %s %s\n", buildVersion(), runtime.Version())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}
