package simulate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/scaler"
)

// Policy names, in report order.
const (
	PolicyHeadroom    = "headroom"
	PolicyKEDADefault = "keda-default"
	PolicyKEDATuned   = "keda-tuned"
	PolicyCPUHPA      = "cpu-hpa"
	PolicyFixed       = "fixed"
	PolicyBound       = "bound"
)

// AllPolicies lists every policy the simulator knows, in report order.
var AllPolicies = []string{PolicyHeadroom, PolicyKEDADefault, PolicyKEDATuned, PolicyCPUHPA, PolicyFixed, PolicyBound}

// Scenario is a scenario file: cluster, workload, arrivals, KEDA/HPA settings and the
// settings of each policy. Zero values take the defaults documented on each field.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Seed makes the random service times (and Poisson arrivals) reproducible. Default 1.
	Seed uint64 `json:"seed,omitempty"`
	// Drain is how long the run continues after the last arrival, for queues to empty.
	// Default 1h.
	Drain Duration `json:"drain,omitempty"`

	Arrivals Arrivals `json:"arrivals"`
	Service  Service  `json:"service"`
	Cluster  Cluster  `json:"cluster"`
	Workload Workload `json:"workload"`
	KEDA     KEDA     `json:"keda,omitempty"`
	Policies Policies `json:"policies,omitempty"`
	// Run lists the policies to run, in report order. Default: all of AllPolicies.
	Run []string `json:"run,omitempty"`

	// file is where the scenario was read from (for error messages and relative trace paths);
	// fsys is set when it was read from an fs.FS (the embedded scenarios).
	file string
	fsys fs.FS
	raw  []byte
}

// Arrivals is where messages come from: a trace file or a synthetic generator.
type Arrivals struct {
	// Trace is a trace file, relative to the scenario file.
	Trace string `json:"trace,omitempty"`
	// Format is counts or events; empty detects it from the header.
	Format string `json:"format,omitempty"`
	// Scale is how many messages one request becomes (0.0001: one message per 10,000
	// requests). Requests are thinned deterministically: second t gets
	// ⌊C(t)·scale⌋ − ⌊C(t−1)·scale⌋ messages, C being the cumulative request count, which
	// keeps the trace's shape. Default 1.
	Scale float64 `json:"scale,omitempty"`
	// Synthetic generates arrivals instead of reading a trace.
	Synthetic *Synthetic `json:"synthetic,omitempty"`
}

// Synthetic is a generated arrival series, in messages per second.
type Synthetic struct {
	// Kind is constant, step, burst, diurnal or poisson.
	Kind string `json:"kind"`
	// Length of the series. Required.
	Length Duration `json:"length"`
	// Rate is the base rate (messages/s): the whole series for constant and poisson, before
	// At for step, between bursts for burst, the mean for diurnal.
	Rate float64 `json:"rate,omitempty"`
	// To is the rate after At (step), during a burst (burst), or the amplitude (diurnal).
	To float64 `json:"to,omitempty"`
	// At is when the step or the first burst starts.
	At Duration `json:"at,omitempty"`
	// Width is how long a burst lasts; Every how often bursts repeat (0: once). Period is the
	// diurnal period (default 24h).
	Width  Duration `json:"width,omitempty"`
	Every  Duration `json:"every,omitempty"`
	Period Duration `json:"period,omitempty"`
}

// Service is how long one message takes, rounded up to whole seconds (at least 1).
type Service struct {
	// Kind is fixed (Mean), exponential (mean Mean), uniform (Min..Max) or sizes
	// (Base + Σ PerUnit[column] × the message's value in that column of an events trace).
	Kind    string              `json:"kind"`
	Mean    Duration            `json:"mean,omitempty"`
	Min     Duration            `json:"min,omitempty"`
	Max     Duration            `json:"max,omitempty"`
	Base    Duration            `json:"base,omitempty"`
	PerUnit map[string]Duration `json:"perUnit,omitempty"`
}

// Cluster is the nodes the workers share with other tenants.
type Cluster struct {
	Nodes []NodeGroup `json:"nodes"`
}

// NodeGroup is Count identical nodes.
type NodeGroup struct {
	Name        string            `json:"name"`
	Count       int               `json:"count,omitempty"` // default 1
	Labels      map[string]string `json:"labels,omitempty"`
	Allocatable Amount            `json:"allocatable"`
	// Tenants are the other pods on each node: what they request (Pods: how many) and what
	// they really use.
	Tenants struct {
		Requests Amount `json:"requests,omitempty"`
		Usage    Amount `json:"usage,omitempty"`
	} `json:"tenants,omitempty"`
}

// Amount is CPU, memory and pod slots, written as Kubernetes quantities ("200m", "4Gi").
type Amount struct {
	CPU    Quantity `json:"cpu,omitempty"`
	Memory Quantity `json:"memory,omitempty"`
	Pods   int64    `json:"pods,omitempty"`
}

func (a Amount) resources() capacity.Resources {
	return capacity.Resources{MilliCPU: a.CPU.milli, Memory: a.Memory.value, Pods: a.Pods}
}

// Workload is the worker Deployment.
type Workload struct {
	// Requests is the pod template's resource requests: what the scheduler places by.
	Requests Amount `json:"requests"`
	// Usage is what a worker really uses when idle and when it holds at least one message.
	Usage struct {
		Idle Amount `json:"idle,omitempty"`
		Busy Amount `json:"busy,omitempty"`
	} `json:"usage,omitempty"`
	// Consumers per worker, each with prefetch 1 (one message at a time). Default 1.
	Consumers int `json:"consumers,omitempty"`
	// StartLatency is from the pod being scheduled to Ready. Default 0.
	StartLatency Duration `json:"startLatency,omitempty"`
	// TerminationGracePeriod is the pods' terminationGracePeriodSeconds, the same for every
	// policy. A deleted worker stops consuming at once (SIGTERM) and finishes the messages in
	// hand if they end within it; what is still held when it ends is lost (SIGKILL: the
	// messages are requeued and the worker counts in busy_killed). Unset: 30s, Kubernetes'
	// default; 0s: killed at once.
	TerminationGracePeriod *Duration `json:"terminationGracePeriod,omitempty"`
	// MinReplicas and MaxReplicas are the ScaledObject's minReplicaCount and
	// maxReplicaCount (and the cpu-hpa's bounds). Default 0 and 100.
	MinReplicas int32 `json:"minReplicas,omitempty"`
	MaxReplicas int32 `json:"maxReplicas,omitempty"`
}

// KEDA is the operator's and the HPA controller's timing, shared by the KEDA-driven policies
// unless a policy overrides it.
type KEDA struct {
	PollingInterval Duration `json:"pollingInterval,omitempty"` // default 30s
	CooldownPeriod  Duration `json:"cooldownPeriod,omitempty"`  // default 300s
	HPASyncPeriod   Duration `json:"hpaSyncPeriod,omitempty"`   // default 15s
}

// Policies holds the settings of each policy.
type Policies struct {
	Headroom  HeadroomSettings `json:"headroom,omitempty"`
	KEDATuned KEDATuned        `json:"kedaTuned,omitempty"`
	CPUHPA    CPUHPA           `json:"cpuHPA,omitempty"`
	Fixed     Fixed            `json:"fixed,omitempty"`
}

// HeadroomSettings is the ScaledObject of the headroom policy.
type HeadroomSettings struct {
	Policy PolicySpec `json:"policy,omitempty"`
	// Footprint overrides the requests as the per-worker footprint given to capacity.Fit
	// (the operator's override when requests understate real use); a resource it leaves out
	// keeps the request.
	Footprint *Amount `json:"footprint,omitempty"`
	// Reserve is kept free on every node. Default none.
	Reserve Amount `json:"reserve,omitempty"`
	// BrokerRefresh is how often the scaler reads the broker (the server's --refresh): its
	// view of the queue and of busy workers, and so the deletion costs it sets, are that old
	// at most, and new work is pushed to KEDA (external-push) at that pace. Default 5s, the
	// server's default. With a reading older than a second, a worker that was idle at the
	// reading can take a message before the scale-down that removes it: see busy_killed.
	BrokerRefresh   Duration `json:"brokerRefresh,omitempty"`
	PollingInterval Duration `json:"pollingInterval,omitempty"`
	CooldownPeriod  Duration `json:"cooldownPeriod,omitempty"`
	// Behavior of the HPA; default the exact behavior (scaler.ExactBehavior).
	Behavior *BehaviorSpec `json:"behavior,omitempty"`
}

// PolicySpec mirrors scaler.Policy in a scenario file.
type PolicySpec struct {
	MessagesPerReplica float64  `json:"messagesPerReplica,omitempty"`
	ExcludeUnacked     bool     `json:"excludeUnacked,omitempty"`
	ServiceTime        Duration `json:"serviceTime,omitempty"`
	StepPods           int32    `json:"stepPods,omitempty"`
	StepPercent        *float64 `json:"stepPercent,omitempty"`
	StepTimeout        Duration `json:"stepTimeout,omitempty"`
	AllowBusyScaleDown bool     `json:"allowBusyScaleDown,omitempty"`
}

// KEDATuned is a KEDA RabbitMQ QueueLength trigger with a chosen value and HPA behavior.
type KEDATuned struct {
	QueueLength     float64       `json:"queueLength,omitempty"` // default 1
	PollingInterval Duration      `json:"pollingInterval,omitempty"`
	CooldownPeriod  Duration      `json:"cooldownPeriod,omitempty"`
	Behavior        *BehaviorSpec `json:"behavior,omitempty"` // default: the legacy rules
}

// CPUHPA is a plain HPA on CPU utilization.
type CPUHPA struct {
	TargetUtilization float64 `json:"targetUtilization,omitempty"` // percent of requests; default 70
	MinReplicas       int32   `json:"minReplicas,omitempty"`       // default max(workload minReplicas, 1)
}

// Fixed runs a constant number of replicas.
type Fixed struct {
	Replicas int32 `json:"replicas,omitempty"` // default workload maxReplicas
}

// BehaviorSpec is autoscaling/v2 HorizontalPodAutoscalerBehavior as written in a
// ScaledObject, or a preset: "exact" (scaler.ExactBehavior) or "legacy" (behavior unset).
type BehaviorSpec struct {
	Preset    string     `json:"preset,omitempty"`
	ScaleUp   *RulesSpec `json:"scaleUp,omitempty"`
	ScaleDown *RulesSpec `json:"scaleDown,omitempty"`
}

// RulesSpec is autoscaling/v2 HPAScalingRules.
type RulesSpec struct {
	StabilizationWindowSeconds *int32       `json:"stabilizationWindowSeconds,omitempty"`
	SelectPolicy               string       `json:"selectPolicy,omitempty"`
	Policies                   []PolicyRule `json:"policies,omitempty"`
	Tolerance                  *float64     `json:"tolerance,omitempty"`
}

// PolicyRule is autoscaling/v2 HPAScalingPolicy.
type PolicyRule struct {
	Type          string `json:"type"`
	Value         int32  `json:"value"`
	PeriodSeconds int32  `json:"periodSeconds"`
}

// Duration is a time.Duration written as "90s", "3m" or a number of seconds.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a number of seconds or a duration such as 90s or 3m", s)
		}
		d.Duration = v
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil || math.IsNaN(f) || math.Abs(f) > 1e9 {
		return fmt.Errorf("duration %s: want a number of seconds or a duration such as 90s or 3m", b)
	}
	d.Duration = time.Duration(f * float64(time.Second))
	return nil
}

// Quantity is a Kubernetes resource quantity ("200m", "4Gi", 2).
type Quantity struct {
	milli, value int64
	text         string
}

// UnmarshalJSON parses a quantity string or number.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := resource.ParseQuantity(s)
	if err != nil || v.Sign() < 0 {
		return fmt.Errorf("quantity %q: want a non-negative Kubernetes quantity such as 200m, 2 or 4Gi", s)
	}
	q.milli, q.value, q.text = v.MilliValue(), v.Value(), s
	return nil
}

// LoadScenario reads a scenario file from disk.
func LoadScenario(file string) (*Scenario, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return parseScenario(b, file, nil)
}

// LoadScenarioFS reads a scenario file from fsys (trace paths are then resolved in fsys).
func LoadScenarioFS(fsys fs.FS, name string) (*Scenario, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return parseScenario(b, name, fsys)
}

var unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

func parseScenario(b []byte, file string, fsys fs.FS) (*Scenario, error) {
	var sc Scenario
	if err := yaml.UnmarshalStrict(b, &sc); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
		msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
		if m := unknownField.FindStringSubmatch(msg); m != nil {
			field := m[1][strings.LastIndex(m[1], ".")+1:]
			return nil, fmt.Errorf("%s:%d: unknown field %q", file, lineOf(b, field+":"), m[1])
		}
		return nil, fmt.Errorf("%s: %s", file, msg)
	}
	sc.file, sc.fsys, sc.raw = file, fsys, b
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// lineOf is the 1-based line of the first occurrence of s in b (0 when absent).
func lineOf(b []byte, s string) int {
	i := bytes.Index(b, []byte(s))
	if i < 0 {
		return 0
	}
	return bytes.Count(b[:i], []byte("\n")) + 1
}

// errorf names the file and, when the field is found in it, the line.
func (sc *Scenario) errorf(field, format string, args ...any) error {
	loc := sc.file
	if sc.file == "" {
		loc = "scenario"
	}
	if n := lineOf(sc.raw, field+":"); n > 0 {
		loc = fmt.Sprintf("%s:%d", loc, n)
	}
	return fmt.Errorf("%s: %s", loc, fmt.Sprintf(format, args...))
}

// Validate reports the first invalid setting, naming the field and its value. It does not
// change sc.
func (sc *Scenario) Validate() error {
	a := sc.Arrivals
	switch {
	case sc.Name == "":
		return sc.errorf("name", "name is required")
	case a.Trace == "" && a.Synthetic == nil:
		return sc.errorf("arrivals", "arrivals: set trace or synthetic")
	case a.Trace != "" && a.Synthetic != nil:
		return sc.errorf("synthetic", "arrivals: set trace or synthetic, not both")
	case a.Format != "" && a.Format != FormatCounts && a.Format != FormatEvents:
		return sc.errorf("format", "arrivals format %q: want counts or events", a.Format)
	case a.Scale < 0 || math.IsNaN(a.Scale) || a.Scale > 1e6:
		return sc.errorf("scale", "arrivals scale %v: want a positive number", a.Scale)
	case sc.Drain.Duration < 0 || sc.Drain.Duration > 30*24*time.Hour:
		return sc.errorf("drain", "drain %v: want between 0 and 30 days", sc.Drain.Duration)
	}
	if g := a.Synthetic; g != nil {
		switch g.Kind {
		case "constant", "step", "burst", "diurnal", "poisson":
		default:
			return sc.errorf("kind", "synthetic kind %q: want constant, step, burst, diurnal or poisson", g.Kind)
		}
		switch {
		case g.Length.Duration < time.Second || g.Length.Duration > maxTraceSeconds*time.Second:
			return sc.errorf("length", "synthetic length %v: want between 1s and 100 days", g.Length.Duration)
		case g.Rate < 0 || g.To < 0 || math.IsNaN(g.Rate+g.To):
			return sc.errorf("rate", "synthetic rate %v / to %v: must not be negative", g.Rate, g.To)
		case g.Kind == "diurnal" && g.To > g.Rate:
			return sc.errorf("to", "synthetic diurnal amplitude (to) %v: must not exceed the mean rate %v", g.To, g.Rate)
		}
	}
	s := sc.Service
	switch s.Kind {
	case "fixed", "exponential":
		if s.Mean.Duration <= 0 {
			return sc.errorf("mean", "service %s: mean %v must be positive", s.Kind, s.Mean.Duration)
		}
	case "uniform":
		if s.Min.Duration < 0 || s.Max.Duration < s.Min.Duration || s.Max.Duration <= 0 {
			return sc.errorf("min", "service uniform: min %v and max %v: want 0 ≤ min ≤ max, max > 0", s.Min.Duration, s.Max.Duration)
		}
	case "sizes":
		if a.Synthetic != nil {
			return sc.errorf("kind", "service sizes needs an events trace with size columns, not synthetic arrivals")
		}
		if len(s.PerUnit) == 0 && s.Base.Duration <= 0 {
			return sc.errorf("perUnit", "service sizes: set base and perUnit (column: duration per unit)")
		}
		for c, d := range s.PerUnit {
			if d.Duration < 0 {
				return sc.errorf(c, "service perUnit %s %v: must not be negative", c, d.Duration)
			}
		}
	default:
		return sc.errorf("service", "service kind %q: want fixed, exponential, uniform or sizes", s.Kind)
	}
	if len(sc.Cluster.Nodes) == 0 {
		return sc.errorf("cluster", "cluster: at least one node group is required")
	}
	for _, g := range sc.Cluster.Nodes {
		switch {
		case g.Name == "":
			return sc.errorf("nodes", "cluster node group without a name")
		case g.Count < 0 || g.Count > 10000:
			return sc.errorf("count", "node group %q count %d: want 1 to 10000", g.Name, g.Count)
		case g.Allocatable.CPU.milli == 0 && g.Allocatable.Memory.value == 0:
			return sc.errorf("allocatable", "node group %q: allocatable cpu and memory are required", g.Name)
		case g.Allocatable.Pods < 0 || g.Tenants.Requests.Pods < 0:
			return sc.errorf("pods", "node group %q: pods must not be negative", g.Name)
		}
	}
	w := sc.Workload
	switch {
	case w.Requests.CPU.milli == 0 && w.Requests.Memory.value == 0:
		return sc.errorf("requests", "workload requests: cpu or memory is required (the scheduler places by requests)")
	case w.Consumers < 0 || w.Consumers > 1000:
		return sc.errorf("consumers", "workload consumers %d: want 1 to 1000", w.Consumers)
	case w.StartLatency.Duration < 0:
		return sc.errorf("startLatency", "workload startLatency %v: must not be negative", w.StartLatency.Duration)
	case w.TerminationGracePeriod != nil && w.TerminationGracePeriod.Duration < 0:
		return sc.errorf("terminationGracePeriod", "workload terminationGracePeriod %v: must not be negative", w.TerminationGracePeriod.Duration)
	case w.MinReplicas < 0 || w.MaxReplicas < 0 || w.MaxReplicas > 100000:
		return sc.errorf("maxReplicas", "workload minReplicas %d / maxReplicas %d: want 0 ≤ min ≤ max ≤ 100000", w.MinReplicas, w.MaxReplicas)
	case w.MaxReplicas > 0 && w.MinReplicas > w.MaxReplicas:
		return sc.errorf("minReplicas", "workload minReplicas %d is above maxReplicas %d", w.MinReplicas, w.MaxReplicas)
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"pollingInterval", sc.KEDA.PollingInterval}, {"cooldownPeriod", sc.KEDA.CooldownPeriod},
		{"hpaSyncPeriod", sc.KEDA.HPASyncPeriod}, {"brokerRefresh", sc.Policies.Headroom.BrokerRefresh},
		{"pollingInterval", sc.Policies.Headroom.PollingInterval}, {"cooldownPeriod", sc.Policies.Headroom.CooldownPeriod},
		{"pollingInterval", sc.Policies.KEDATuned.PollingInterval}, {"cooldownPeriod", sc.Policies.KEDATuned.CooldownPeriod},
	} {
		if d.v.Duration < 0 || (d.v.Duration > 0 && d.v.Duration < time.Second) || d.v.Duration%time.Second != 0 {
			return sc.errorf(d.field, "%s %v: want whole seconds (the simulator's tick is 1s)", d.field, d.v.Duration)
		}
	}
	p := sc.Policies
	if _, err := sc.headroomPolicy(); err != nil {
		return sc.errorf("policy", "headroom policy: %v", err)
	}
	for name, b := range map[string]*BehaviorSpec{"headroom": p.Headroom.Behavior, "kedaTuned": p.KEDATuned.Behavior} {
		if _, err := b.behavior(1); err != nil {
			return sc.errorf("behavior", "%s behavior: %v", name, err)
		}
	}
	switch {
	case p.KEDATuned.QueueLength < 0 || math.IsNaN(p.KEDATuned.QueueLength):
		return sc.errorf("queueLength", "kedaTuned queueLength %v: must be positive", p.KEDATuned.QueueLength)
	case p.CPUHPA.TargetUtilization < 0 || math.IsNaN(p.CPUHPA.TargetUtilization):
		return sc.errorf("targetUtilization", "cpuHPA targetUtilization %v: must be a positive percentage", p.CPUHPA.TargetUtilization)
	case p.CPUHPA.MinReplicas < 0:
		return sc.errorf("minReplicas", "cpuHPA minReplicas %d: must not be negative", p.CPUHPA.MinReplicas)
	case p.Fixed.Replicas < 0:
		return sc.errorf("replicas", "fixed replicas %d: must not be negative", p.Fixed.Replicas)
	}
	if w.Requests.CPU.milli == 0 && contains(sc.runList(), PolicyCPUHPA) {
		return sc.errorf("requests", "cpu-hpa needs workload requests.cpu (utilization is usage / requests)")
	}
	seen := map[string]bool{}
	for _, r := range sc.Run {
		if !contains(AllPolicies, r) {
			return sc.errorf("run", "run: unknown policy %q (want some of %s)", r, strings.Join(AllPolicies, ", "))
		}
		if seen[r] {
			return sc.errorf("run", "run: policy %q listed twice", r)
		}
		seen[r] = true
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (sc *Scenario) runList() []string {
	if len(sc.Run) == 0 {
		return AllPolicies
	}
	return sc.Run
}

func (sc *Scenario) maxReplicas() int32 {
	if sc.Workload.MaxReplicas == 0 {
		return scaler.DefaultMaxReplicas
	}
	return sc.Workload.MaxReplicas
}

func (sc *Scenario) consumers() int {
	return max(sc.Workload.Consumers, 1)
}

func (sc *Scenario) headroomPolicy() (scaler.Policy, error) {
	ps := sc.Policies.Headroom.Policy
	p := scaler.DefaultPolicy()
	p.MessagesPerReplica = float64(sc.consumers())
	if ps.MessagesPerReplica != 0 {
		p.MessagesPerReplica = ps.MessagesPerReplica
	}
	p.ExcludeUnacked = ps.ExcludeUnacked
	p.ServiceTime = ps.ServiceTime.Duration
	p.MaxReplicas = sc.maxReplicas()
	if ps.StepPods != 0 {
		p.StepPods = ps.StepPods
	}
	if ps.StepPercent != nil {
		p.StepPercent = *ps.StepPercent
	}
	if ps.StepTimeout.Duration != 0 {
		p.StepTimeout = ps.StepTimeout.Duration
	}
	p.AllowBusyScaleDown = ps.AllowBusyScaleDown
	return p, p.Validate()
}

// behavior converts the spec; nil means the legacy rules (behavior unset), except where the
// caller substitutes its own default.
func (b *BehaviorSpec) behavior(maxReplicas int32) (*scaler.Behavior, error) {
	if b == nil {
		return nil, nil
	}
	switch b.Preset {
	case "exact":
		if b.ScaleUp != nil || b.ScaleDown != nil {
			return nil, errors.New("preset exact takes no scaleUp or scaleDown")
		}
		e := scaler.ExactBehavior(maxReplicas)
		return &e, nil
	case "legacy":
		if b.ScaleUp != nil || b.ScaleDown != nil {
			return nil, errors.New("preset legacy takes no scaleUp or scaleDown")
		}
		return nil, nil
	case "":
	default:
		return nil, fmt.Errorf("preset %q: want exact or legacy", b.Preset)
	}
	out := &scaler.Behavior{}
	var err error
	if out.ScaleUp, err = b.ScaleUp.rules(); err != nil {
		return nil, fmt.Errorf("scaleUp: %w", err)
	}
	if out.ScaleDown, err = b.ScaleDown.rules(); err != nil {
		return nil, fmt.Errorf("scaleDown: %w", err)
	}
	h := scaler.HPA{MaxReplicas: max(maxReplicas, 1), Behavior: out}
	return out, h.Validate()
}

func (r *RulesSpec) rules() (*scaler.ScalingRules, error) {
	if r == nil {
		return nil, nil
	}
	out := &scaler.ScalingRules{SelectPolicy: r.SelectPolicy, Tolerance: r.Tolerance}
	if r.StabilizationWindowSeconds != nil {
		if *r.StabilizationWindowSeconds < 0 || *r.StabilizationWindowSeconds > 3600 {
			return nil, fmt.Errorf("stabilizationWindowSeconds %d: want 0 to 3600", *r.StabilizationWindowSeconds)
		}
		w := time.Duration(*r.StabilizationWindowSeconds) * time.Second
		out.StabilizationWindow = &w
	}
	for _, p := range r.Policies {
		out.Policies = append(out.Policies, scaler.ScalingPolicy{Type: p.Type, Value: p.Value, Period: time.Duration(p.PeriodSeconds) * time.Second})
	}
	return out, nil
}

// readTrace opens the scenario's trace (relative to the scenario file), or override (a path
// on disk) when set. format is the caller's format; empty means the scenario's own format for
// its own trace, and detection from the header for an override.
func (sc *Scenario) readTrace(override, format string) (*Trace, error) {
	name, fsys := sc.Arrivals.Trace, sc.fsys
	switch {
	case override != "":
		name, fsys = override, nil
	case fsys != nil:
		name = path.Clean(path.Join(path.Dir(sc.file), name))
	case filepath.IsAbs(name):
	default:
		name = filepath.Join(filepath.Dir(sc.file), name)
	}
	if format == "" && override == "" {
		format = sc.Arrivals.Format
	}
	var f fs.File
	var err error
	if fsys != nil {
		f, err = fsys.Open(name)
	} else {
		f, err = os.Open(name)
	}
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	return ReadTrace(f, name, format)
}

// Units of the scenario's durations in ticks.
func ticks(d time.Duration, def int64) int64 {
	if d <= 0 {
		return def
	}
	return int64(d / time.Second)
}
