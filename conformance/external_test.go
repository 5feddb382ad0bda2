package conformance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v2 "k8s.io/api/autoscaling/v2"
)

// TestMetricSpec checks the metric KEDA puts into the HPA it creates for a ScaledObject: one
// external metric, indexed by KEDA (s0-...), with an AverageValue target of exactly 1, so
// that the HPA's ceil(value / target) is the scaler's decision.
func TestMetricSpec(t *testing.T) {
	needStack(t)
	ns := namespace(t)
	declare(t, broker(t), ns+"-jobs")
	target(t, ns, "worker", "100m", "64Mi")
	md := scaledObject(t, ns, "worker", 10, map[string]string{"queue": ns + "-jobs"})

	specs := kedaScaler(t, ns, "worker", md).GetMetricSpecForScaling(t.Context())
	if len(specs) != 1 {
		t.Fatalf("GetMetricSpecForScaling returned %d specs, want 1\n%s", len(specs), scalerLogs())
	}
	s := specs[0]
	if s.Type != v2.ExternalMetricSourceType || s.External == nil {
		t.Fatalf("spec type %q, external %v: want an External metric", s.Type, s.External)
	}
	if name := s.External.Metric.Name; !strings.HasPrefix(name, "s0-") {
		t.Errorf("metric name %q: want KEDA's trigger index prefix s0-", name)
	}
	tg := s.External.Target
	if tg.Type != v2.AverageValueMetricType || tg.AverageValue == nil || tg.AverageValue.MilliValue() != 1000 {
		t.Errorf("target %+v: want AverageValue 1", tg)
	}
}

// TestMetricsAndActivity checks what KEDA reads on every poll, for a range of queue states:
// the value it hands to the HPA (the decision) and the activity it uses to scale from and to
// zero. The nodes are the stack's two 4-CPU nodes, with nothing else running.
func TestMetricsAndActivity(t *testing.T) {
	needStack(t)
	tests := []struct {
		name       string
		messages   int
		cpu        string // per worker
		maxReplica int64
		metadata   map[string]string
		want       int64
	}{
		{name: "empty queue scales to zero", messages: 0, cpu: "100m", maxReplica: 10,
			metadata: map[string]string{"messagesPerReplica": "5"}, want: 0},
		{name: "demand is ceil(ready / messagesPerReplica)", messages: 12, cpu: "100m", maxReplica: 10,
			metadata: map[string]string{"messagesPerReplica": "5", "stepPods": "100"}, want: 3},
		{name: "bounded by maxReplicaCount", messages: 60, cpu: "100m", maxReplica: 4,
			metadata: map[string]string{"messagesPerReplica": "5", "stepPods": "100"}, want: 4},
		{name: "bounded by what the cluster can place", messages: 50, cpu: "3", maxReplica: 20,
			metadata: map[string]string{"messagesPerReplica": "5", "stepPods": "100"}, want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			q := ns + "-jobs"
			ch := broker(t)
			declare(t, ch, q)
			publish(t, ch, q, tc.messages)
			target(t, ns, "worker", tc.cpu, "64Mi")
			md := map[string]string{"queue": q}
			for k, v := range tc.metadata {
				md[k] = v
			}
			md = scaledObject(t, ns, "worker", tc.maxReplica, md)
			sc := kedaScaler(t, ns, "worker", md)
			specs := sc.GetMetricSpecForScaling(t.Context())
			if len(specs) != 1 {
				t.Fatalf("GetMetricSpecForScaling returned %d specs, want 1\n%s", len(specs), scalerLogs())
			}
			metric := specs[0].External.Metric.Name
			eventually(t, "KEDA reads the decision", 15*time.Second, func(ctx context.Context) error {
				vals, active, err := sc.GetMetricsAndActivity(ctx, metric)
				if err != nil {
					return err
				}
				if len(vals) != 1 {
					return fmt.Errorf("%d metric values, want 1", len(vals))
				}
				got := vals[0].Value.MilliValue()
				if got != tc.want*1000 || active != (tc.want > 0) {
					return fmt.Errorf("value %s active %v, want %d active %v", vals[0].Value.String(), active, tc.want, tc.want > 0)
				}
				if vals[0].MetricName != metric {
					return fmt.Errorf("metric name %q, want %q", vals[0].MetricName, metric)
				}
				return nil
			})
		})
	}
}

// TestStreamIsActive drives KEDA's push scaler (external-push: the StreamIsActive stream that
// scales from zero without waiting for a poll): it reports inactive on an empty queue, then
// active soon after a message arrives, within about one broker refresh rather than one
// polling interval.
func TestStreamIsActive(t *testing.T) {
	needStack(t)
	ns := namespace(t)
	q := ns + "-jobs"
	ch := broker(t)
	declare(t, ch, q)
	target(t, ns, "worker", "100m", "64Mi")
	md := scaledObject(t, ns, "worker", 10, map[string]string{"queue": q, "messagesPerReplica": "1"})
	ps := kedaPushScaler(t, ns, "worker", md)

	ctx, cancel := context.WithCancel(t.Context())
	active := make(chan bool, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ps.Run(ctx, active) // closes active when it returns
	}()
	defer func() {
		cancel()
		<-done
	}()

	next := func(what string, want bool) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			select {
			case got, ok := <-active:
				if !ok {
					t.Fatalf("%s: the stream ended\n%s", what, scalerLogs())
				}
				if got == want {
					return time.Since(start)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: no %v within 20 s\n%s", what, want, scalerLogs())
			}
		}
	}
	next("empty queue", false)
	publish(t, ch, q, 1)
	latency := next("first message", true)
	t.Logf("StreamIsActive pushed true %v after the broker confirmed the first message", latency.Round(time.Millisecond))
}

// TestInvalidMetadata checks that KEDA's client sees bad trigger metadata as an
// InvalidArgument error naming the key and the value, never as a value.
func TestInvalidMetadata(t *testing.T) {
	needStack(t)
	tests := []struct {
		name     string
		metadata map[string]string
		wantIn   []string
	}{
		{name: "unknown key", metadata: map[string]string{"queue": "q", "bogus": "1"}, wantIn: []string{"bogus", `"1"`}},
		{name: "bad number", metadata: map[string]string{"queue": "q", "messagesPerReplica": "lots"}, wantIn: []string{"messagesPerReplica", "lots"}},
		{name: "no queue", metadata: map[string]string{"messagesPerReplica": "5"}, wantIn: []string{"queue"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			target(t, ns, "worker", "100m", "64Mi")
			md := scaledObject(t, ns, "worker", 10, tc.metadata)
			sc := kedaScaler(t, ns, "worker", md)
			if specs := sc.GetMetricSpecForScaling(t.Context()); len(specs) != 0 {
				t.Errorf("GetMetricSpecForScaling = %+v, want none for invalid metadata", specs)
			}
			vals, active, err := sc.GetMetricsAndActivity(t.Context(), "s0-anything")
			if err == nil {
				t.Fatalf("GetMetricsAndActivity = %v, %v, nil; want an InvalidArgument error", vals, active)
			}
			if code := status.Code(err); code != codes.InvalidArgument {
				t.Errorf("error code %v (%v), want InvalidArgument", code, err)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
		})
	}
}
