// Command labbuild builds the binaries the lab runs (Kubernetes control plane, etcd, KWOK,
// metrics-server, ...) from the Go module proxy into the cache directory, skipping those
// already built.
//
//	go run ./internal/cmd/labbuild [-list] [-print] [names...]
//
// With no names it builds every registered binary and fetches the registered module files
// (CRDs). It prints one line per binary it built,
// with the time it took, and nothing more when everything is cached. With -print it builds
// the named binaries and prints only their paths, one per line, for scripts and tests.
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
	"time"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "labbuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("labbuild", flag.ContinueOnError)
	list := fs.Bool("list", false, "list the registered binaries with their cached paths and exit")
	printPaths := fs.Bool("print", false, "build the named binaries and print only their paths")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := fs.Args()
	if *printPaths {
		if len(names) == 0 {
			return errors.New("-print needs the names of the binaries")
		}
		for _, n := range names {
			p, err := lab.EnsureBinary(ctx, n)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, p)
		}
		return nil
	}
	if len(names) == 0 {
		names = lab.Recipes()
	}
	if *list {
		for _, n := range lab.Recipes() {
			p, err := lab.Binary(n)
			if err != nil {
				p = "(not built)"
			}
			fmt.Fprintf(stdout, "%-24s %s\n", n, p)
		}
		return nil
	}
	var errs []error
	for _, n := range names {
		if lab.Built(n) {
			continue
		}
		start := time.Now()
		p, err := lab.EnsureBinary(ctx, n)
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintf(stdout, "FAIL  %-24s %s\n", n, time.Since(start).Round(time.Second))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		fmt.Fprintf(stdout, "built %-24s %6s  %s\n", n, time.Since(start).Round(time.Second), p)
	}
	if len(fs.Args()) == 0 {
		for _, f := range lab.Files() {
			if _, err := f.Fetch(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
