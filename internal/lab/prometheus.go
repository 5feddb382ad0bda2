package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Prometheus defaults.
const (
	// DefaultScrapeInterval is the scrape and rule evaluation interval when
	// PrometheusOptions.ScrapeInterval is zero: fast, so a test sees data within seconds.
	DefaultScrapeInterval = time.Second
	// DefaultPrometheusJob is the job name of the scrape config when PrometheusOptions.Job is
	// empty. It matches the job the ServiceMonitor in manifests/ produces.
	DefaultPrometheusJob = "headroom"

	promStartTimeout = time.Minute
	promStopGrace    = 10 * time.Second
)

// PrometheusOperatorVersion is the release of the Prometheus Operator whose CRDs the lab
// installs to validate ServiceMonitor and PrometheusRule objects.
const PrometheusOperatorVersion = "v0.85.0"

// ServiceMonitorCRD and PrometheusRuleCRD are the Prometheus Operator's CustomResourceDefinitions
// for the two kinds manifests/ ships.
var (
	ServiceMonitorCRD = ModuleFileRef{
		Module: "github.com/prometheus-operator/prometheus-operator", Version: PrometheusOperatorVersion,
		Path: "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
	}
	PrometheusRuleCRD = ModuleFileRef{
		Module: "github.com/prometheus-operator/prometheus-operator", Version: PrometheusOperatorVersion,
		Path: "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
	}
)

func init() {
	RegisterFile(ServiceMonitorCRD)
	RegisterFile(PrometheusRuleCRD)
}

// PrometheusOptions configures StartPrometheus. The zero value starts a server that scrapes
// nothing.
type PrometheusOptions struct {
	// Targets are host:port addresses scraped at /metrics under one job.
	Targets []string
	// Job names the scrape job; "" means DefaultPrometheusJob.
	Job string
	// ScrapeInterval is both the scrape and the rule evaluation interval; 0 means
	// DefaultScrapeInterval.
	ScrapeInterval time.Duration
	// RuleFiles are loaded as rule_files (alerting and recording rules).
	RuleFiles []string
}

// Prometheus is a server started by StartPrometheus: Debian's prometheus on 127.0.0.1 with a
// throwaway TSDB in a temporary directory.
type Prometheus struct {
	// URL is http://127.0.0.1:PORT.
	URL string
	// Job is the scrape job of the targets.
	Job string

	dir      string
	proc     *Process
	stopOnce sync.Once
}

// PrometheusBinary returns the path of the prometheus server, or an error wrapping
// ErrUnavailable naming the package that provides it.
func PrometheusBinary() (string, error) { return debianBinary("prometheus", "prometheus") }

// Promtool returns the path of promtool (Debian package prometheus), or an error wrapping
// ErrUnavailable.
func Promtool() (string, error) { return debianBinary("promtool", "prometheus") }

func debianBinary(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not on PATH (install the Debian package %s): %w", name, pkg, ErrUnavailable)
	}
	return p, nil
}

// StartPrometheus starts a server and returns once it is ready. It does not wait for the
// first scrape: see WaitScraped.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (*Prometheus, error) {
	return retryPorts(func() (*Prometheus, error) { return startPrometheus(ctx, opts) })
}

func startPrometheus(ctx context.Context, opts PrometheusOptions) (p *Prometheus, err error) {
	bin, err := PrometheusBinary()
	if err != nil {
		return nil, err
	}
	if opts.ScrapeInterval < 0 {
		return nil, fmt.Errorf("start prometheus: negative scrape interval %v", opts.ScrapeInterval)
	}
	ivl := opts.ScrapeInterval
	if ivl == 0 {
		ivl = DefaultScrapeInterval
	}
	job := opts.Job
	if job == "" {
		job = DefaultPrometheusJob
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	dir, err := os.MkdirTemp("", "headroom-prometheus-")
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	p = &Prometheus{URL: "http://127.0.0.1:" + strconv.Itoa(port), Job: job, dir: dir}
	started := p // a failed start returns nil, which the deferred call must not stop
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	cfg := prometheusConfig(job, ivl, opts.Targets, opts.RuleFiles)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		// Debian's defaults point at /etc/prometheus console templates; none are needed.
		"--web.console.templates="+dir, "--web.console.libraries="+dir,
	)
	if p.proc, err = Start("prometheus", cmd, filepath.Join(dir, "prometheus.log")); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if err = waitHTTP(ctx, p.proc, client, p.URL+"/-/ready", promStartTimeout); err != nil {
		return nil, fmt.Errorf("start prometheus: %w\n%s", err, p.proc.Tail(2000))
	}
	return p, nil
}

// prometheusConfig renders the configuration file. Targets and rule files are quoted as JSON
// strings, which YAML reads as double-quoted scalars.
func prometheusConfig(job string, ivl time.Duration, targets, rules []string) string {
	q := func(ss []string) string {
		b, _ := json.Marshal(append([]string{}, ss...))
		return string(b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", ivl, ivl)
	fmt.Fprintf(&b, "rule_files: %s\n", q(rules))
	fmt.Fprintf(&b, "scrape_configs:\n- job_name: %q\n  static_configs:\n  - targets: %s\n", job, q(targets))
	return b.String()
}

// WaitScraped waits until every target of the job has been scraped successfully and the
// sample is queryable.
func (p *Prometheus) WaitScraped(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	query := fmt.Sprintf(`up{job=%q}`, p.Job)
	return WaitFor(ctx, "first scrape of job "+p.Job, timeout, 200*time.Millisecond, func(ctx context.Context) error {
		u := p.URL + "/api/v1/query?query=" + url.QueryEscape(query)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return fmt.Errorf("decode %s: %w", query, err)
		}
		if len(body.Data.Result) == 0 {
			return fmt.Errorf("%s: no samples yet", query)
		}
		for _, r := range body.Data.Result {
			if r.Value[1] != "1" {
				return fmt.Errorf("%s: a target is down", query)
			}
		}
		return nil
	})
}

// Tail returns the end of the server's log, for error messages.
func (p *Prometheus) Tail(n int) string {
	if p.proc == nil {
		return ""
	}
	return p.proc.Tail(n)
}

// Stop stops the server and removes its directory. It is safe to call more than once.
func (p *Prometheus) Stop() {
	p.stopOnce.Do(func() {
		if p.proc != nil {
			_ = p.proc.Stop(promStopGrace)
		}
		_ = os.RemoveAll(p.dir)
	})
}
