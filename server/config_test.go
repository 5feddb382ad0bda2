package server_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/scaler"
	"github.com/headroom-autoscaler/headroom/server"
)

func TestParseConfig(t *testing.T) {
	brokers := []string{"main", "other"}
	tests := []struct {
		name  string
		md    map[string]string
		check func(c *server.Config) string
	}{
		{name: "defaults", md: map[string]string{"broker": "main", "queue": "jobs", "scalerAddress": "h:9090", "enableTLS": "false"},
			check: func(c *server.Config) string {
				want := scaler.DefaultPolicy()
				if c.Policy != want || c.Weight != 1 || c.Footprint.Mode != server.FootprintRequests || c.MaxSet || c.Reserve != (server.Resources{}) {
					return "defaults not applied"
				}
				if c.Selector != (queue.Selector{Broker: "main", Queue: "jobs", DepthsOnly: true}) { // no serviceTime: no rates needed
					return "selector"
				}
				return ""
			}},
		{name: "every key", md: map[string]string{
			"broker": "other", "queuePattern": "^jobs-", "operation": "max", "vhost": "prod",
			"messagesPerReplica": "2.5", "includeUnacked": "false", "serviceTime": "30s",
			"stepPods": "3", "stepPercent": "25", "stepTimeout": "90s", "idleAfter": "5m",
			"footprint": "cpu=500m,memory=4Gi", "reserve": "cpu=1,memory=512Mi", "weight": "2",
			"maxReplicas": "40", "scaleTargetKind": "StatefulSet", "scaleTargetName": "loader",
			"allowBusyScaleDown": "true"},
			check: func(c *server.Config) string {
				p := c.Policy
				switch {
				case c.Selector != (queue.Selector{Broker: "other", Pattern: "^jobs-", Op: queue.OpMax, VHost: "prod"}):
					return "selector"
				case p.MessagesPerReplica != 2.5 || !p.ExcludeUnacked || p.ServiceTime != 30*time.Second:
					return "demand fields"
				case p.StepPods != 3 || p.StepPercent != 0.25 || p.StepTimeout != 90*time.Second || p.IdleAfter != 5*time.Minute:
					return "step fields"
				case c.Footprint != (server.Footprint{Mode: server.FootprintExplicit, Explicit: server.Resources{MilliCPU: 500, Memory: 4 << 30}}):
					return "footprint"
				case c.Reserve != (server.Resources{MilliCPU: 1000, Memory: 512 << 20}):
					return "reserve"
				case c.Weight != 2 || p.MaxReplicas != 40 || !c.MaxSet || !p.AllowBusyScaleDown:
					return "weight/max/busy"
				case c.TargetKind != "StatefulSet" || c.TargetName != "loader":
					return "target override"
				}
				return ""
			}},
		{name: "limits footprint", md: map[string]string{"broker": "main", "queue": "q", "footprint": "limits"},
			check: func(c *server.Config) string {
				if c.Footprint.Mode != server.FootprintLimits {
					return "footprint mode"
				}
				return ""
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := server.ParseConfig(tc.md, brokers)
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if msg := tc.check(c); msg != "" {
				t.Errorf("%s wrong: %+v", msg, c)
			}
		})
	}
}

func TestParseConfigErrorsNameKeyAndValue(t *testing.T) {
	base := func(kv ...string) map[string]string {
		md := map[string]string{"broker": "main", "queue": "q"}
		for i := 0; i < len(kv); i += 2 {
			md[kv[i]] = kv[i+1]
		}
		return md
	}
	tests := []struct {
		name       string
		md         map[string]string
		key, value string
	}{
		{name: "unknown key", md: base("queueName", "q"), key: "queueName", value: "q"},
		{name: "operation without pattern", md: base("operation", "max"), key: "operation", value: "max"},
		{name: "bad operation", md: map[string]string{"broker": "main", "queuePattern": "x", "operation": "median"}, key: "operation", value: "median"},
		{name: "bad pattern", md: map[string]string{"broker": "main", "queuePattern": "(["}, key: "queuePattern", value: "(["},
		{name: "zero messages per replica", md: base("messagesPerReplica", "0"), key: "messagesPerReplica", value: "0"},
		{name: "bad bool", md: base("includeUnacked", "maybe"), key: "includeUnacked", value: "maybe"},
		{name: "negative service time", md: base("serviceTime", "-1s"), key: "serviceTime", value: "-1s"},
		{name: "zero step pods", md: base("stepPods", "0"), key: "stepPods", value: "0"},
		{name: "huge step percent", md: base("stepPercent", "5000"), key: "stepPercent", value: "5000"},
		{name: "zero step timeout", md: base("stepTimeout", "0s"), key: "stepTimeout", value: "0s"},
		{name: "bad idle after", md: base("idleAfter", "1 minute"), key: "idleAfter", value: "1 minute"},
		{name: "unknown resource", md: base("footprint", "gpu=1"), key: "footprint", value: "gpu=1"},
		{name: "empty footprint", md: base("footprint", "cpu=0"), key: "footprint", value: "cpu=0"},
		{name: "bad reserve", md: base("reserve", "memory=-1Gi"), key: "reserve", value: "memory=-1Gi"},
		{name: "zero weight", md: base("weight", "0"), key: "weight", value: "0"},
		{name: "max replicas zero", md: base("maxReplicas", "0"), key: "maxReplicas", value: "0"},
		{name: "kind without name", md: base("scaleTargetKind", "Deployment"), key: "scaleTargetKind", value: "Deployment"},
		{name: "bad kind", md: base("scaleTargetKind", "Pod", "scaleTargetName", "x"), key: "scaleTargetKind", value: "Pod"},
		{name: "broker not configured", md: map[string]string{"broker": "elsewhere", "queue": "q"}, key: "broker", value: "elsewhere"},
		{name: "broker required with two configured", md: map[string]string{"queue": "q"}, key: "broker", value: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.ParseConfig(tc.md, []string{"main", "other"})
			var inv *server.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("ParseConfig(%v) = %v, want an InvalidError", tc.md, err)
			}
			if inv.Key != tc.key || inv.Value != tc.value {
				t.Errorf("error names %s=%q, want %s=%q (%v)", inv.Key, inv.Value, tc.key, tc.value, err)
			}
			if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), `"`+tc.value+`"`) {
				t.Errorf("error text %q does not name %s=%q", err, tc.key, tc.value)
			}
		})
	}
}

func TestParseConfigSingleBrokerIsDefault(t *testing.T) {
	c, err := server.ParseConfig(map[string]string{"queue": "q"}, []string{"only"})
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if c.Selector.Broker != "only" {
		t.Errorf("broker = %q, want the only configured broker", c.Selector.Broker)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("queue", "q", "stepPercent", "50")
	f.Add("footprint", "cpu=1,memory=1Gi", "reserve", "cpu=100m")
	f.Add("queuePattern", "^a", "operation", "avg")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		c, err := server.ParseConfig(map[string]string{k1: v1, k2: v2}, []string{"main"})
		if err != nil {
			var inv *server.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("error %v is not an InvalidError", err)
			}
			return
		}
		if err := c.Policy.Validate(); err != nil {
			t.Fatalf("accepted config has an invalid policy: %v", err)
		}
		if err := c.Selector.Validate(); err != nil {
			t.Fatalf("accepted config has an invalid selector: %v", err)
		}
	})
}
