package server

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/scaler"
)

// Trigger metadata keys. Every key a ScaledObject's trigger may set is listed here; KEDA's own
// keys (kedaKeys) are ignored, any other key is an error.
const (
	KeyBroker             = "broker"
	KeyQueue              = "queue"
	KeyQueuePattern       = "queuePattern"
	KeyOperation          = "operation"
	KeyVHost              = "vhost"
	KeyMessagesPerReplica = "messagesPerReplica"
	KeyIncludeUnacked     = "includeUnacked"
	KeyServiceTime        = "serviceTime"
	KeyStepPods           = "stepPods"
	KeyStepPercent        = "stepPercent"
	KeyStepTimeout        = "stepTimeout"
	KeyIdleAfter          = "idleAfter"
	KeyFootprint          = "footprint"
	KeyReserve            = "reserve"
	KeyWeight             = "weight"
	KeyMaxReplicas        = "maxReplicas"
	KeyScaleTargetKind    = "scaleTargetKind"
	KeyScaleTargetName    = "scaleTargetName"
	KeyAllowBusyScaleDown = "allowBusyScaleDown"
)

// kedaKeys are keys KEDA's external scaler reads itself and forwards with the rest of the
// trigger metadata (pkg/scalers/external_scaler.go, KEDA v2.21): they are not ours and are
// ignored. The TLS material normally comes from a TriggerAuthentication, which KEDA does not
// forward, but a trigger may still carry the keys.
var kedaKeys = map[string]bool{
	"scalerAddress": true,
	"enableTLS":     true,
	"unsafeSsl":     true,
	"caCert":        true,
	"tlsClientCert": true,
	"tlsClientKey":  true,
}

// FootprintMode says where the per-worker footprint comes from.
type FootprintMode string

// Footprint modes.
const (
	// FootprintRequests: the pod template's resource requests (the default; what the scheduler
	// places by).
	FootprintRequests FootprintMode = "requests"
	// FootprintLimits: the pod template's limits, for workloads whose requests understate use.
	FootprintLimits FootprintMode = "limits"
	// FootprintExplicit: the Resources given in the metadata.
	FootprintExplicit FootprintMode = "explicit"
)

// Resources is an amount of CPU and memory. The zero value is nothing.
type Resources struct {
	MilliCPU int64 // thousandths of a core
	Memory   int64 // bytes
}

func (r Resources) String() string {
	return fmt.Sprintf("cpu=%dm,memory=%d", r.MilliCPU, r.Memory)
}

// Footprint is how the size of one worker is obtained.
type Footprint struct {
	Mode     FootprintMode
	Explicit Resources // when Mode is FootprintExplicit
}

// DefaultWeight is a trigger's share weight when the metadata sets none.
const DefaultWeight = 1.0

// Config is one trigger's metadata, parsed and validated. Zero values of the policy fields
// take the scaler package's defaults.
type Config struct {
	Selector  queue.Selector
	Policy    scaler.Policy
	Footprint Footprint
	Reserve   Resources // per node, on top of what the cluster reserves itself
	Weight    float64
	// MaxSet is true when the metadata set maxReplicas; otherwise the ScaledObject's
	// maxReplicaCount applies.
	MaxSet bool
	// TargetKind and TargetName override the ScaledObject's scaleTargetRef when set.
	TargetKind, TargetName string
}

// InvalidError is bad trigger metadata: it names the key and the value.
type InvalidError struct {
	Key, Value string
	Reason     string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("trigger metadata %s=%q: %s", e.Key, e.Value, e.Reason)
}

func invalid(key, value, format string, args ...any) error {
	return &InvalidError{Key: key, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// ParseConfig parses and validates one trigger's metadata. brokers lists the configured
// broker names; when exactly one is configured, the broker key may be omitted.
func ParseConfig(md map[string]string, brokers []string) (*Config, error) {
	for k, v := range md {
		if _, ok := parsers[k]; !ok && !kedaKeys[k] {
			return nil, invalid(k, v, "unknown key (known keys: %s)", strings.Join(knownKeys(), ", "))
		}
	}
	c := &Config{
		Policy:    scaler.DefaultPolicy(),
		Footprint: Footprint{Mode: FootprintRequests},
		Weight:    DefaultWeight,
	}
	for _, k := range knownKeys() { // a fixed order, so the first error is stable
		if v, ok := md[k]; ok {
			if err := parsers[k](c, v); err != nil {
				return nil, err
			}
		}
	}
	sel := &c.Selector
	switch {
	case sel.Broker == "" && len(brokers) == 1:
		sel.Broker = brokers[0]
	case sel.Broker == "":
		return nil, invalid(KeyBroker, "", "required: name one of the configured brokers (%s)", strings.Join(brokers, ", "))
	case !contains(brokers, sel.Broker):
		return nil, invalid(KeyBroker, sel.Broker, "not a configured broker (configured: %s)", strings.Join(brokers, ", "))
	}
	switch {
	case sel.Queue == "" && sel.Pattern == "":
		return nil, invalid(KeyQueue, "", "required: set %s or %s", KeyQueue, KeyQueuePattern)
	case sel.Queue != "" && sel.Pattern != "":
		return nil, invalid(KeyQueuePattern, sel.Pattern, "exclusive with %s=%q", KeyQueue, sel.Queue)
	case sel.Op != "" && sel.Pattern == "":
		return nil, invalid(KeyOperation, string(sel.Op), "applies to %s only", KeyQueuePattern)
	}
	if err := c.Policy.Validate(); err != nil {
		// Field checks above already name the key; this catches combinations.
		return nil, invalid("policy", "", "%v", err)
	}
	if (c.TargetKind == "") != (c.TargetName == "") {
		return nil, invalid(KeyScaleTargetKind, c.TargetKind, "set both %s and %s, or neither (%s=%q)", KeyScaleTargetKind, KeyScaleTargetName, KeyScaleTargetName, c.TargetName)
	}
	// The decision reads the queue's rates only for serviceTime; without it the broker may
	// list its queues without statistics, less than half the cost to it.
	sel.DepthsOnly = c.Policy.ServiceTime == 0
	return c, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

type parseFunc func(c *Config, v string) error

var parsers = map[string]parseFunc{
	KeyBroker: func(c *Config, v string) error {
		if v == "" {
			return invalid(KeyBroker, v, "empty")
		}
		c.Selector.Broker = v
		return nil
	},
	KeyQueue: func(c *Config, v string) error {
		if v == "" || len(v) > 255 {
			return invalid(KeyQueue, v, "a queue name of 1 to 255 bytes")
		}
		c.Selector.Queue = v
		return nil
	},
	KeyQueuePattern: func(c *Config, v string) error {
		probe := queue.Selector{Broker: "x", Pattern: v}
		if v == "" {
			return invalid(KeyQueuePattern, v, "empty")
		}
		if err := probe.Validate(); err != nil {
			return invalid(KeyQueuePattern, v, "not a regular expression: %v", errors.Unwrap(err))
		}
		c.Selector.Pattern = v
		return nil
	},
	KeyOperation: func(c *Config, v string) error {
		op, err := queue.ParseOp(v)
		if err != nil || v == "" {
			return invalid(KeyOperation, v, "want sum, max or avg")
		}
		c.Selector.Op = op
		return nil
	},
	KeyVHost: func(c *Config, v string) error {
		if v == "" {
			return invalid(KeyVHost, v, "empty (omit the key for the default vhost %q)", queue.DefaultVHost)
		}
		c.Selector.VHost = v
		return nil
	},
	KeyMessagesPerReplica: func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return invalid(KeyMessagesPerReplica, v, "want a positive number")
		}
		c.Policy.MessagesPerReplica = f
		return nil
	},
	KeyIncludeUnacked: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return invalid(KeyIncludeUnacked, v, "want true or false")
		}
		c.Policy.ExcludeUnacked = !b
		return nil
	},
	KeyServiceTime: func(c *Config, v string) error {
		d, err := parseDuration(KeyServiceTime, v, true)
		c.Policy.ServiceTime = d
		return err
	},
	KeyStepPods: func(c *Config, v string) error {
		n, err := parseInt32(KeyStepPods, v, 1)
		c.Policy.StepPods = n
		return err
	},
	KeyStepPercent: func(c *Config, v string) error {
		f, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f > 1000 {
			return invalid(KeyStepPercent, v, "want a percentage of the current replicas from 0 to 1000 (50 means 50%%)")
		}
		c.Policy.StepPercent = f / 100
		return nil
	},
	KeyStepTimeout: func(c *Config, v string) error {
		d, err := parseDuration(KeyStepTimeout, v, false)
		c.Policy.StepTimeout = d
		return err
	},
	KeyIdleAfter: func(c *Config, v string) error {
		d, err := parseDuration(KeyIdleAfter, v, false)
		c.Policy.IdleAfter = d
		return err
	},
	KeyFootprint: func(c *Config, v string) error {
		switch FootprintMode(v) {
		case FootprintRequests, FootprintLimits:
			c.Footprint = Footprint{Mode: FootprintMode(v)}
			return nil
		}
		r, err := parseResources(KeyFootprint, v)
		if err != nil {
			return err
		}
		if r.MilliCPU == 0 && r.Memory == 0 {
			return invalid(KeyFootprint, v, "want requests, limits, or cpu=…,memory=… with at least one non-zero amount")
		}
		c.Footprint = Footprint{Mode: FootprintExplicit, Explicit: r}
		return nil
	},
	KeyReserve: func(c *Config, v string) error {
		r, err := parseResources(KeyReserve, v)
		c.Reserve = r
		return err
	},
	KeyWeight: func(c *Config, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return invalid(KeyWeight, v, "want a positive number")
		}
		c.Weight = f
		return nil
	},
	KeyMaxReplicas: func(c *Config, v string) error {
		n, err := parseInt32(KeyMaxReplicas, v, 1)
		c.Policy.MaxReplicas, c.MaxSet = n, err == nil
		return err
	},
	KeyScaleTargetKind: func(c *Config, v string) error {
		switch v {
		case "Deployment", "StatefulSet":
			c.TargetKind = v
			return nil
		}
		return invalid(KeyScaleTargetKind, v, "want Deployment or StatefulSet")
	},
	KeyScaleTargetName: func(c *Config, v string) error {
		if v == "" || len(v) > 253 {
			return invalid(KeyScaleTargetName, v, "want an object name")
		}
		c.TargetName = v
		return nil
	},
	KeyAllowBusyScaleDown: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return invalid(KeyAllowBusyScaleDown, v, "want true or false")
		}
		c.Policy.AllowBusyScaleDown = b
		return nil
	},
}

var knownKeys = sync.OnceValue(func() []string {
	ks := make([]string, 0, len(parsers))
	for k := range parsers {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
})

func parseDuration(key, v string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || (!zeroOK && d == 0) {
		return 0, invalid(key, v, "want a positive duration such as 30s or 2m")
	}
	return d, nil
}

func parseInt32(key, v string, minimum int64) (int32, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < minimum {
		return 0, invalid(key, v, "want an integer from %d to %d", minimum, math.MaxInt32)
	}
	return int32(n), nil
}

// parseResources parses "cpu=500m,memory=4Gi" (either part may be omitted).
func parseResources(key, v string) (Resources, error) {
	var r Resources
	if strings.TrimSpace(v) == "" {
		return r, invalid(key, v, "empty: want cpu=…,memory=…")
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(v, ",") {
		name, amount, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || seen[name] {
			return Resources{}, invalid(key, v, "want cpu=…,memory=… (each at most once), got %q", part)
		}
		seen[name] = true
		q, err := resource.ParseQuantity(amount)
		if err != nil || q.Sign() < 0 {
			return Resources{}, invalid(key, v, "%s amount %q is not a non-negative quantity", name, amount)
		}
		switch name {
		case "cpu":
			r.MilliCPU = q.MilliValue()
		case "memory":
			r.Memory = q.Value()
		default:
			return Resources{}, invalid(key, v, "unknown resource %q: want cpu or memory", name)
		}
	}
	return r, nil
}

// canonical is a stable string form of a metadata map, used as a cache key.
func canonical(md map[string]string) string {
	if len(md) == 0 {
		return ""
	}
	keys := make([]string, 0, len(md))
	n := 0
	for k, v := range md {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(md[k])
		b.WriteByte(0)
	}
	return b.String()
}

// maxCachedConfigs bounds the config cache; it is cleared when full (distinct metadata maps
// are few: one per trigger).
const maxCachedConfigs = 10000

// configCache parses each distinct metadata map once.
type configCache struct {
	brokers []string
	mu      sync.RWMutex
	m       map[string]cachedConfig
}

type cachedConfig struct {
	cfg *Config
	err error
}

func newConfigCache(brokers []string) *configCache {
	return &configCache{brokers: brokers, m: map[string]cachedConfig{}}
}

// get returns the parsed config of md and its canonical key.
func (cc *configCache) get(md map[string]string) (*Config, string, error) {
	key := canonical(md)
	cc.mu.RLock()
	e, ok := cc.m[key]
	cc.mu.RUnlock()
	if ok {
		return e.cfg, key, e.err
	}
	cfg, err := ParseConfig(md, cc.brokers)
	cc.mu.Lock()
	if len(cc.m) >= maxCachedConfigs {
		clear(cc.m)
	}
	cc.m[key] = cachedConfig{cfg, err}
	cc.mu.Unlock()
	return cfg, key, err
}
