// Command demo shows headroom doing its job on this machine, with nothing mocked: it starts
// RabbitMQ, a Kubernetes control plane with small KWOK nodes, KEDA and the scaler on
// loopback, plays a burst of messages through them and prints what the cluster does.
//
//	go run ./internal/cmd/demo            play the scenario (what `make demo` runs)
//	go run ./internal/cmd/demo stack      start the stack, print its endpoints as JSON, hold it
//
// Every process it starts is stopped when it ends, also on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, lab.ErrUnavailable):
		fmt.Fprintln(os.Stderr, "demo:", err)
		fmt.Fprintln(os.Stderr, "demo: run `make deps` to install and build what is missing")
		os.Exit(exitUnavailable)
	default:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// exitUnavailable is the exit code when a component is missing on this machine; the
// conformance module's tests skip on it (unless HEADROOM_REAL=1).
const exitUnavailable = 3

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "stack" {
		return runStack(ctx, args[1:], stdin, stdout, stderr)
	}
	return runDemo(ctx, args, stdout, stderr)
}
