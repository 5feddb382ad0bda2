package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/headroom-autoscaler/headroom/e2e"
)

// Endpoints is what `demo stack` writes for other programs (the conformance module's tests)
// to reach the stack it runs. Its JSON form is the contract between the two.
type Endpoints struct {
	Kubeconfig    string        `json:"kubeconfig"`
	AMQPURL       string        `json:"amqpURL"`
	ManagementURL string        `json:"managementURL"`
	Broker        string        `json:"broker"`
	ScalerAddress string        `json:"scalerAddress"`
	Scalers       []ScalerAddrs `json:"scalers"`
	ScalerLogs    []string      `json:"scalerLogs"`
	Dir           string        `json:"dir"`
}

// ScalerAddrs are one scaler replica's own addresses.
type ScalerAddrs struct {
	GRPC string `json:"grpc"`
	HTTP string `json:"http"`
}

// runStack starts the stack, writes its endpoints as JSON (to -out, else stdout), and holds
// it until ctx ends (SIGINT, SIGTERM) or, with -stdin, until standard input closes: the
// parent that started it went away.
func runStack(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keda := fs.Bool("keda", false, "also run KEDA's operator and metrics adapter")
	replicas := fs.Int("replicas", 1, "scaler replicas behind the scaler address")
	scaler := fs.String("scaler", "", "scaler binary; default: build ./cmd/scaler")
	out := fs.String("out", "", "write the endpoints JSON to this file (atomically) instead of stdout")
	watchStdin := fs.Bool("stdin", false, "stop when standard input closes")
	brokerDefaults := fs.Bool("broker-default-stats", false, "run the broker with RabbitMQ's own statistics settings (every 5 s) instead of the harness's 500 ms")
	brokerMetrics := fs.Bool("broker-metrics", false, "the scaler reads queue depths from the broker's Prometheus endpoint (--broker-metrics) instead of the management API's listing")
	refresh := fs.Duration("refresh", e2e.DefaultRefresh, "the scaler's --refresh (the product's default is 5s; the harness's is shorter, so that tests react within a second)")
	var scalerEnv []string
	fs.Func("scaler-env", "add `KEY=VALUE` to the scaler's environment, not the rest of the stack's (repeatable)", func(v string) error {
		scalerEnv = append(scalerEnv, v)
		return nil
	})
	scalerCPUs := fs.String("scaler-cpus", "", "pin the scaler to these CPUs (a taskset `list`: 1, 0,2, 2-3)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo stack: unexpected argument %q", fs.Arg(0))
	}
	if *replicas < 1 {
		return fmt.Errorf("demo stack: -replicas %d: want at least 1", *replicas)
	}
	if *refresh <= 0 {
		return fmt.Errorf("demo stack: -refresh %v: want a positive duration", *refresh)
	}
	s, err := e2e.StartStack(ctx, e2e.StackOptions{
		KEDA: *keda, ScalerReplicas: *replicas, ScalerBinary: *scaler, Progress: stderr, BrokerStatsDefaults: *brokerDefaults,
		BrokerMetrics: *brokerMetrics, Refresh: *refresh, ScalerEnv: scalerEnv, ScalerCPUs: *scalerCPUs,
		// A lab on loopback: profiles on, for the load benchmark and for whoever investigates.
		ScalerArgs: []string{"--pprof"},
	})
	if err != nil {
		return err
	}
	defer s.Stop()
	ep := Endpoints{
		Kubeconfig: s.Kube.Kubeconfig, AMQPURL: s.Rabbit.AMQPURL(), ManagementURL: s.Rabbit.ManagementURL(),
		Broker: e2e.BrokerName, ScalerAddress: s.ScalerAddress, Dir: s.Dir,
	}
	for _, sc := range s.Scalers {
		ep.Scalers = append(ep.Scalers, ScalerAddrs{GRPC: sc.GRPCAddr, HTTP: sc.HTTPAddr})
		ep.ScalerLogs = append(ep.ScalerLogs, sc.Log())
	}
	b, err := json.MarshalIndent(ep, "", "  ")
	if err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stdout, string(b))
	} else {
		tmp := *out + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, *out); err != nil {
			return err
		}
	}
	fmt.Fprintln(stderr, "stack running; stop with Ctrl-C")
	gone := make(chan struct{})
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			close(gone)
		}()
	}
	select {
	case <-ctx.Done():
	case <-gone:
	}
	fmt.Fprintln(stderr, "stopping the stack")
	return nil
}
