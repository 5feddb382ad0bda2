package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/kubeyaml"
	"github.com/headroom-autoscaler/headroom/server"
)

const checkUsage = `Usage: scaler check [flags] FILE|DIR|- ...

Checks the ScaledObjects in Kubernetes manifests (YAML or JSON, several documents per file,
List objects; a directory is read for *.yaml, *.yml and *.json; - is standard input, as in
'kubectl kustomize DIR | scaler check -') without a cluster: the metadata of every trigger
that points at headroom, as 'scaler serve' parses it, and the fields that decide whether the
HPA runs headroom's answer as it is (metricType, other triggers, the HPA behavior).
Errors make the exit status 1; warnings too with --strict.

Flags:
`

// runCheck is `scaler check`.
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("scaler check", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var brokers, addresses listFlag
	fset.Var(&brokers, "broker", "a configured broker, `NAME` or NAME=URL as given to scaler serve (repeatable; default: broker names are not checked)")
	fset.Var(&addresses, "scaler-address", "scalerAddress by which ScaledObjects name this scaler, as given to scaler serve (repeatable; default: every external trigger that names a queue)")
	strict := fset.Bool("strict", false, "fail on warnings too")
	fset.Usage = func() {
		fmt.Fprint(stderr, checkUsage)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fset.NArg() == 0 {
		return fmt.Errorf("no manifest given: %w", errUsage)
	}
	opts := server.CheckOptions{Addresses: addresses}
	for _, b := range brokers {
		name, _, _ := strings.Cut(b, "=")
		if name == "" {
			return fmt.Errorf("--broker %q: empty name: %w", b, errUsage)
		}
		opts.Brokers = append(opts.Brokers, name)
	}

	var sum checkSummary
	for _, arg := range fset.Args() {
		files, err := manifestFiles(arg)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := checkFile(f, opts, stdout, &sum); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(stdout, "ScaledObjects: %d, pointing at headroom: %d (triggers: %d); errors: %d, warnings: %d\n",
		sum.objects, sum.served, sum.triggers, sum.errors, sum.warnings)
	switch {
	case sum.errors > 0:
		return fmt.Errorf("%d errors in the ScaledObjects", sum.errors)
	case *strict && sum.warnings > 0:
		return fmt.Errorf("%d warnings in the ScaledObjects (--strict)", sum.warnings)
	}
	return nil
}

type checkSummary struct {
	objects, served, triggers, errors, warnings int
}

// manifestFiles expands a path argument: "-" is standard input, a directory its manifest
// files (recursively, in lexical order).
func manifestFiles(arg string) ([]string, error) {
	if arg == "-" {
		return []string{arg}, nil
	}
	st, err := os.Stat(arg)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{arg}, nil
	}
	var out []string
	err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				out = append(out, p)
			}
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s: no *.yaml, *.yml or *.json file", arg)
	}
	return out, err
}

// checkFile checks every ScaledObject of one file and prints a line per finding.
func checkFile(path string, opts server.CheckOptions, stdout io.Writer, sum *checkSummary) error {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
		path = "(stdin)"
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return err
	}
	objs, err := kubeyaml.Decode(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, u := range objs {
		if u.GetKind() != "ScaledObject" || !strings.HasPrefix(u.GetAPIVersion(), "keda.sh/") {
			continue
		}
		sum.objects++
		findings, served := server.CheckScaledObject(capacity.ParseScaledObject(u), opts)
		if served == 0 {
			continue
		}
		sum.served++
		sum.triggers += served
		name := u.GetName()
		if ns := u.GetNamespace(); ns != "" {
			name = ns + "/" + name
		}
		for _, f := range findings {
			if f.Error {
				sum.errors++
			} else {
				sum.warnings++
			}
			fmt.Fprintf(stdout, "%s: ScaledObject %s: %s\n", path, name, f)
		}
	}
	return nil
}
