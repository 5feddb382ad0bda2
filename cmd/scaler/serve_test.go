package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
)

func TestParseServe(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*serveConfig) string
		wantErr string
	}{
		{name: "defaults", args: []string{"--broker", "main=http://127.0.0.1:15672"},
			check: func(c *serveConfig) string {
				if c.grpcAddr != ":9090" || c.httpAddr != ":8080" || c.refresh != 5*time.Second || c.maxAge != 15*time.Second {
					return fmt.Sprintf("grpc %q http %q refresh %v max age %v", c.grpcAddr, c.httpAddr, c.refresh, c.maxAge)
				}
				return ""
			}},
		{name: "environment", env: map[string]string{
			"HEADROOM_BROKER": "a=http://127.0.0.1:1, b=amqp://127.0.0.1:2/", "HEADROOM_GRPC_ADDR": "127.0.0.1:7000",
			"HEADROOM_REFRESH": "1s", "HEADROOM_SCALER_ADDRESS": "x:9090,y:9090"},
			check: func(c *serveConfig) string {
				if len(c.brokers) != 2 || c.grpcAddr != "127.0.0.1:7000" || c.refresh != time.Second || c.maxAge != 3*time.Second || len(c.scalerAddresses) != 2 {
					return fmt.Sprintf("brokers %q grpc %q refresh %v max age %v addresses %q", c.brokers, c.grpcAddr, c.refresh, c.maxAge, c.scalerAddresses)
				}
				return ""
			}},
		{name: "flag wins over environment", args: []string{"--grpc-addr", ":1", "--broker", "a=http://x"}, env: map[string]string{"HEADROOM_GRPC_ADDR": ":2"},
			check: func(c *serveConfig) string {
				if c.grpcAddr != ":1" {
					return "grpc addr " + c.grpcAddr
				}
				return ""
			}},
		{name: "no broker", wantErr: "no broker"},
		{name: "bad refresh", args: []string{"--broker", "a=http://x", "--refresh", "0s"}, wantErr: "--refresh 0s"},
		{name: "bad env duration", args: []string{"--broker", "a=http://x"}, env: map[string]string{"HEADROOM_REFRESH": "often"}, wantErr: `HEADROOM_REFRESH="often"`},
		{name: "key without cert", args: []string{"--broker", "a=http://x", "--tls-key", "k.pem"}, wantErr: `key "k.pem"`},
		{name: "client ca without cert", args: []string{"--broker", "a=http://x", "--tls-client-ca", "ca.pem"}, wantErr: `--tls-client-ca "ca.pem"`},
		{name: "bad log format", args: []string{"--broker", "a=http://x", "--log-format", "xml"}, wantErr: `--log-format "xml"`},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "bogus"},
		{name: "broker metrics", args: []string{"--broker", "a=http://x:15672", "--broker-metrics", "a=http://x:15692"},
			check: func(c *serveConfig) string {
				if !slices.Equal(c.metricsURLs["a"], []string{"http://x:15692"}) {
					return fmt.Sprintf("metrics %v", c.metricsURLs)
				}
				return ""
			}},
		{name: "broker metrics of a cluster", args: []string{"--broker", "a=http://x:15672", "--broker-metrics", "a=http://x-0:15692, http://x-1:15692"},
			check: func(c *serveConfig) string {
				if !slices.Equal(c.metricsURLs["a"], []string{"http://x-0:15692", "http://x-1:15692"}) {
					return fmt.Sprintf("metrics %q", c.metricsURLs)
				}
				return ""
			}},
		{name: "broker metrics with an empty entry", args: []string{"--broker", "a=http://x", "--broker-metrics", "a=http://x-0:15692,"}, wantErr: `--broker-metrics a: url list "http://x-0:15692,": entry 2 is empty`},
		{name: "broker metrics from the environment", args: []string{"--broker", "a=http://x"}, env: map[string]string{"HEADROOM_BROKER_METRICS": "a=http://x:15692"},
			check: func(c *serveConfig) string {
				if len(c.brokerMetrics.listFlag) != 1 || c.brokerMetrics.listFlag[0] != "a=http://x:15692" {
					return fmt.Sprintf("broker metrics %q", c.brokerMetrics)
				}
				return ""
			}},
		{name: "broker metrics of clusters from the environment", args: []string{"--broker", "a=http://x", "--broker", "b=http://y"},
			env: map[string]string{"HEADROOM_BROKER_METRICS": "a=http://x-0:15692,http://x-1:15692 b=http://y-0:15692, HTTPS://y-1:15691"},
			check: func(c *serveConfig) string {
				if !slices.Equal(c.metricsURLs["a"], []string{"http://x-0:15692", "http://x-1:15692"}) ||
					!slices.Equal(c.metricsURLs["b"], []string{"http://y-0:15692", "HTTPS://y-1:15691"}) {
					return fmt.Sprintf("metrics %q", c.metricsURLs)
				}
				return ""
			}},
		{name: "broker metrics from the environment, a url first", args: []string{"--broker", "a=http://x"}, env: map[string]string{"HEADROOM_BROKER_METRICS": "http://x-0:15692"},
			wantErr: "--broker-metrics http://x-0:15692: want NAME=URL"},
		{name: "broker metrics of an unknown broker", args: []string{"--broker", "a=http://x", "--broker-metrics", "b=http://x:15692"}, wantErr: `--broker-metrics b=http://x:15692: no --broker named "b"`},
		{name: "broker metrics twice", args: []string{"--broker", "a=http://x", "--broker-metrics", "a=http://x:1", "--broker-metrics", "a=http://x:2"}, wantErr: `broker "a" given twice`},
		{name: "broker metrics without a url", args: []string{"--broker", "a=http://x", "--broker-metrics", "a"}, wantErr: "--broker-metrics a: want NAME=URL"},
		{name: "broker metrics hides the password", args: []string{"--broker", "a=http://x", "--broker-metrics", "b=http://u:hunter2@x"}, wantErr: "no --broker named"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseServe(tc.args, io.Discard, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errUsage) {
					t.Fatalf("error %v, want a usage error mentioning %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if msg := tc.check(c); msg != "" {
				t.Errorf("got %s", msg)
			}
		})
	}
}

func TestServeHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"serve", "--help"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run serve --help: %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"grpc-addr", "http-addr", "kubeconfig", "broker", "broker-metrics", "broker-credentials-file", "refresh",
		"tls-cert", "tls-key", "tls-client-ca", "max-snapshot-age", "scaler-address", "log-format", "log-level"} {
		if !strings.Contains(out.String(), "--"+f+"\n") || !strings.Contains(out.String(), envName(f)) {
			t.Errorf("help does not document --%s and %s:\n%s", f, envName(f), out.String())
		}
	}
}

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr error
		want    string
	}{
		{name: "version", args: []string{"version"}, want: "scaler "},
		{name: "help", args: []string{"--help"}, wantErr: flag.ErrHelp, want: "serve"},
		{name: "nothing", args: nil, wantErr: errUsage},
		{name: "unknown", args: []string{"frobnicate"}, wantErr: errUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tc.args, &out, &out)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("run(%q) = %v, want %v", tc.args, err, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output %q does not contain %q", out.String(), tc.want)
			}
		})
	}
}

// TestRunServeEndToEnd runs the whole command in-process against a real broker: flags,
// listeners, a real gRPC client, the HTTP endpoints, then a context cancel (what the first
// SIGTERM does) and a clean exit. The API server in the kubeconfig does not answer, so the
// cluster caches never sync: the scaler must say so (not ready, Unavailable) rather than
// answer.
func TestRunServeEndToEnd(t *testing.T) {
	labtest.Short(t, "RabbitMQ broker")
	rmq, err := lab.StartRabbitMQ(t.Context(), lab.RabbitMQOptions{})
	labtest.Check(t, "RabbitMQ broker", err)
	defer rmq.Stop()

	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = lab.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:%d"}}]
users: [{name: u, user: {}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, ports[2]))
	creds := filepath.Join(t.TempDir(), "credentials")
	writeFile(t, creds, "main=guest:guest\n")

	grpcAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs labtest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--kubeconfig", kubeconfig,
			"--broker", "main=" + rmq.ManagementURL(), "--broker-credentials-file", creds, "--refresh", "200ms",
			"--log-format", "text", "--log-level", "debug", "--pprof"}, io.Discard, &logs)
	}()

	httpGet := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := httpGet("/healthz"); code != http.StatusOK; code, _ = httpGet("/healthz") {
		if time.Now().After(deadline) {
			t.Fatalf("/healthz never answered; logs:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := httpGet("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not synced") {
		t.Errorf("/readyz = %d %q, want 503 naming the unsynced caches", code, body)
	}
	if code, body := httpGet("/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("/debug/pprof/goroutine with --pprof = %d %q, want 200 with the goroutine profile", code, body)
	}
	code, body := httpGet("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "headroom_caches_synced 0") || !strings.Contains(body, "headroom_build_info{") {
		t.Errorf("/metrics = %d, want 200 with headroom_caches_synced 0 and headroom_build_info:\n%s", code, body)
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewExternalScalerClient(conn)
	md := map[string]string{"scalerAddress": grpcAddr, "broker": "main", "queue": "jobs"}
	ref := &pb.ScaledObjectRef{Namespace: "default", Name: "worker", ScalerMetadata: md}
	if spec, err := client.GetMetricSpec(t.Context(), ref); err != nil || len(spec.MetricSpecs) != 1 {
		t.Errorf("GetMetricSpec = %v, %v; want one metric", spec, err)
	}
	_, err = client.GetMetrics(t.Context(), &pb.GetMetricsRequest{ScaledObjectRef: ref})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("GetMetrics before the caches sync: %v, want Unavailable naming the caches", err)
	}
	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("grpc health = %v, %v; want NOT_SERVING", hc, err)
	}

	cancel() // what the first SIGTERM does
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v, want nil after a clean shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not return after cancel; logs:\n%s", logs.String())
	}
	for _, want := range []string{"msg=serving", "msg=\"shutting down\"", "msg=stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
