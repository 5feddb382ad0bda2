package server_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	pb "github.com/headroom-autoscaler/headroom/proto"
	"github.com/headroom-autoscaler/headroom/queue"
	"github.com/headroom-autoscaler/headroom/server"
)

const testRefresh = 200 * time.Millisecond

// env is a server on 127.0.0.1:0 reading a real broker, and a real gRPC client.
type env struct {
	srv     *server.Server
	client  pb.ExternalScalerClient
	cluster *fakeCluster
	broker  *lab.RabbitMQ
	reader  *queue.Reader
	reg     *prometheus.Registry
	skew    atomic.Int64 // added to the server's clock, in nanoseconds
}

type envOptions struct {
	extraBrokers []queue.BrokerConfig
	serverTLS    *tls.Config
	clientCreds  credentials.TransportCredentials
	// wrapQueue, when set, stands between the server and the real reader.
	wrapQueue func(server.QueueReader) server.QueueReader
	logger    *slog.Logger
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	rmq := labtest.SharedRabbitMQ(t)
	e := &env{cluster: newFakeCluster(), broker: rmq, reg: prometheus.NewRegistry()}
	brokers := append([]queue.BrokerConfig{{Name: "main", URL: rmq.ManagementURL(), Username: "guest", Password: "guest"}}, o.extraBrokers...)
	reader, err := queue.NewReader(brokers, queue.Options{Refresh: testRefresh, Timeout: time.Second})
	if err != nil {
		t.Fatalf("new reader: %v", err)
	}
	reader.Start(context.Background())
	e.reader = reader
	var qr server.QueueReader = reader
	if o.wrapQueue != nil {
		qr = o.wrapQueue(reader)
	}
	srv, err := server.New(server.Options{
		Queue: qr, Brokers: reader, Cluster: e.cluster, Registerer: e.reg,
		Refresh: testRefresh, Version: "test", Logger: o.logger,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) },
	})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	srv.Start(context.Background())
	e.srv = srv

	var sopts []grpc.ServerOption
	if o.serverTLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(o.serverTLS)))
	}
	// The options the scaler serves with (interceptors, stream workers, windows, the request
	// memo), so that every call of these tests goes through them.
	sopts = append(sopts, srv.GRPCOptions()...)
	g := grpc.NewServer(sopts...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(lis)
	}()
	creds := o.clientCreds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	e.client = pb.NewExternalScalerClient(conn)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Close() // ends streams, then in-flight calls finish
		g.GracefulStop()
		<-served
		_ = reader.Close()
	})
	return e
}

// queueName returns a queue name unique to the test, declared on the broker.
func (e *env) queue(t *testing.T, suffix string) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "-" + suffix
	if err := e.broker.Admin().DeclareQueue(t.Context(), "/", name); err != nil {
		t.Fatalf("declare %s: %v", name, err)
	}
	t.Cleanup(func() { _ = e.broker.Admin().DeleteQueue(context.Background(), "/", name) })
	return name
}

func ref(ns, name string, md map[string]string) *pb.ScaledObjectRef {
	return &pb.ScaledObjectRef{Namespace: ns, Name: name, ScalerMetadata: md}
}

// metric calls GetMetrics until the planner has read the queue (the first read of a new
// queue happens at the next refresh), then returns the value or the final error.
func (e *env) metric(t *testing.T, r *pb.ScaledObjectRef) (float64, error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		e.srv.PlanNow()
		var resp *pb.GetMetricsResponse
		resp, err = e.client.GetMetrics(t.Context(), &pb.GetMetricsRequest{ScaledObjectRef: r, MetricName: server.MetricName})
		if err == nil {
			if n := len(resp.MetricValues); n != 1 {
				t.Fatalf("GetMetrics returned %d values, want 1", n)
			}
			v := resp.MetricValues[0]
			if float64(v.MetricValue) != v.MetricValueFloat {
				t.Errorf("metricValue %d and metricValueFloat %v disagree", v.MetricValue, v.MetricValueFloat)
			}
			return v.MetricValueFloat, nil
		}
		if !strings.Contains(err.Error(), "first read not done") {
			return 0, err
		}
	}
	return 0, err
}

// metricBecomes calls metric until it answers want, for at most within, and returns the
// last answer: the value (or error) to report when want never came.
func (e *env) metricBecomes(t *testing.T, r *pb.ScaledObjectRef, want float64, within time.Duration) (float64, error) {
	t.Helper()
	var v float64
	var err error
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v, err = e.metric(t, r); err == nil && v == want {
			break
		}
	}
	return v, err
}

func TestGetMetricsFollowsQueueBoundedByFit(t *testing.T) {
	e := newEnv(t, envOptions{})
	q := e.queue(t, "jobs")
	if err := e.broker.Admin().Publish(t.Context(), "/", q, 7); err != nil {
		t.Fatalf("publish: %v", err)
	}
	md := map[string]string{"scalerAddress": "headroom:9090", "broker": "main", "queue": q}
	e.cluster.add("default", "worker", server.Workload{}, md)
	r := ref("default", "worker", md)

	// Wait until the broker's statistics show the 7 messages.
	e.cluster.set("worker", server.Workload{Current: 100, Ready: 100, Fit: 100})
	waitFor(t, "7 messages visible", func() bool { v, err := e.metric(t, r); return err == nil && v == 7 })

	tests := []struct {
		name string
		w    server.Workload
		want float64
	}{
		{name: "from zero, one step", w: server.Workload{Fit: 10}, want: 1},
		{name: "queue served", w: server.Workload{Current: 6, Ready: 6, Fit: 10}, want: 7},
		{name: "no room", w: server.Workload{Current: 6, Ready: 6, Fit: 0}, want: 6},
		{name: "room for one", w: server.Workload{Current: 4, Ready: 4, Fit: 1}, want: 5},
		{name: "step not ready yet is held by step", w: server.Workload{Current: 2, Ready: 2, Fit: 10}, want: 3},
		{name: "pending pods stop stepping", w: server.Workload{Current: 3, Ready: 2, Pending: 1, Fit: 10}, want: 3},
		{name: "scale down to need", w: server.Workload{Current: 12, Ready: 12, Fit: 10}, want: 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.cluster.set("worker", tc.w)
			got, err := e.metric(t, r)
			if err != nil {
				t.Fatalf("GetMetrics: %v", err)
			}
			if got != tc.want {
				t.Errorf("GetMetrics = %v, want %v", got, tc.want)
			}
			act, err := e.client.IsActive(t.Context(), r)
			if err != nil {
				t.Fatalf("IsActive: %v", err)
			}
			if act.Result != (tc.want > 0) {
				t.Errorf("IsActive = %v, want %v", act.Result, tc.want > 0)
			}
		})
	}

	t.Run("ready", func(t *testing.T) {
		if err := e.srv.Ready(); err != nil {
			t.Errorf("Ready() = %v, want nil with the broker up and the caches synced", err)
		}
	})

	t.Run("metric spec", func(t *testing.T) {
		spec, err := e.client.GetMetricSpec(t.Context(), r)
		if err != nil {
			t.Fatalf("GetMetricSpec: %v", err)
		}
		if len(spec.MetricSpecs) != 1 || spec.MetricSpecs[0].TargetSize != 1 || spec.MetricSpecs[0].TargetSizeFloat != 1 || spec.MetricSpecs[0].MetricName != server.MetricName {
			t.Errorf("GetMetricSpec = %v, want one metric %q with target 1", spec.MetricSpecs, server.MetricName)
		}
	})

	t.Run("empty queue scales to zero", func(t *testing.T) {
		if err := e.broker.Admin().PurgeQueue(t.Context(), "/", q); err != nil {
			t.Fatalf("purge: %v", err)
		}
		e.cluster.set("worker", server.Workload{Current: 7, Ready: 7, Fit: 10})
		waitFor(t, "zero after purge", func() bool { v, err := e.metric(t, r); return err == nil && v == 0 })
		act, err := e.client.IsActive(t.Context(), r)
		if err != nil || act.Result {
			t.Errorf("IsActive = %v, %v; want false", act, err)
		}
	})
}

func TestShareSplitsRoom(t *testing.T) {
	e := newEnv(t, envOptions{})
	qa, qb := e.queue(t, "a"), e.queue(t, "b")
	for _, q := range []string{qa, qb} {
		if err := e.broker.Admin().Publish(t.Context(), "/", q, 20); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	tests := []struct {
		name             string
		weightA, weightB string
		curA, curB       int32 // pods each runs already
		fitA, fitB       int32 // how many more of each fit alone
		wantA, wantB     float64
	}{
		// 2 + 2 running and 4 free slots: 8 in all, split 3:1.
		{name: "weights", weightA: "3", weightB: "1", curA: 2, curB: 2, fitA: 4, fitB: 4, wantA: 6, wantB: 2},
		{name: "equal weights", weightA: "1", weightB: "1", curA: 2, curB: 2, fitA: 4, fitB: 4, wantA: 4, wantB: 4},
		// b came first and runs 3: all 4 free slots go to a (its part of 8 is 6), and none of
		// b's pods is taken back.
		{name: "the first keeps what it runs", weightA: "3", weightB: "1", curA: 1, curB: 3, fitA: 4, fitB: 4, wantA: 5, wantB: 3},
		{name: "above its part gets nothing", weightA: "1", weightB: "1", curA: 0, curB: 6, fitA: 4, fitB: 4, wantA: 4, wantB: 6},
		// b's workers are 4 times larger: the free room is 8 of a's or 2 of b's, and b's 2
		// running pods already take as much as all of it. The equal part of the whole (8 + 2 +
		// 8 a-pods' worth) is 9 a-pods' worth each: a gets 7, and the eighth slot, which b
		// could not use, too.
		{name: "different footprints", weightA: "1", weightB: "1", curA: 2, curB: 2, fitA: 8, fitB: 2, wantA: 2 + 8, wantB: 2},
		// Room for everything wanted: no one is cut.
		{name: "enough room", weightA: "1", weightB: "1", curA: 2, curB: 2, fitA: 40, fitB: 40, wantA: 20, wantB: 20},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := fmt.Sprintf("share-%d", i)
			mda := map[string]string{"queue": qa, "stepPods": "100", "weight": tc.weightA}
			mdb := map[string]string{"queue": qb, "stepPods": "100", "weight": tc.weightB}
			e.cluster.add(ns, ns+"-a", server.Workload{Current: tc.curA, Ready: tc.curA, Fit: tc.fitA}, mda)
			e.cluster.add(ns, ns+"-b", server.Workload{Current: tc.curB, Ready: tc.curB, Fit: tc.fitB}, mdb)
			defer e.cluster.remove(ns)
			var a, b float64
			var errA, errB error
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				a, errA = e.metric(t, ref(ns, ns+"-a", mda))
				b, errB = e.metric(t, ref(ns, ns+"-b", mdb))
				if errA == nil && errB == nil && a == tc.wantA && b == tc.wantB {
					return
				}
			}
			t.Errorf("a = %v (%v), b = %v (%v); want %v and %v", a, errA, b, errB, tc.wantA, tc.wantB)
		})
	}
}

// A target whose step waits for its last pods to be Ready still claims its part of the
// room: the others do not take it meanwhile.
func TestStepWaitKeepsItsPart(t *testing.T) {
	e := newEnv(t, envOptions{})
	qa, qb := e.queue(t, "heavy"), e.queue(t, "light")
	for _, q := range []string{qa, qb} {
		if err := e.broker.Admin().Publish(t.Context(), "/", q, 20); err != nil {
			t.Fatal(err)
		}
	}
	mda := map[string]string{"queue": qa, "stepPods": "100", "weight": "3"}
	mdb := map[string]string{"queue": qb, "stepPods": "100", "weight": "1"}
	// The planner sees both at zero, with work: each asks for workers.
	e.cluster.add("default", "heavy", server.Workload{Fit: 7}, mda)
	e.cluster.add("default", "light", server.Workload{Fit: 7}, mdb)
	for _, r := range []*pb.ScaledObjectRef{ref("default", "heavy", mda), ref("default", "light", mdb)} {
		waitFor(t, r.Name+" asks for workers", func() bool { v, err := e.metric(t, r); return err == nil && v > 0 })
	}
	// Both scale up to 1: 1 + 1 running, 6 free, 8 in all, 6 and 2 by weight. heavy's new
	// pod is not Ready, so its next step waits, and light must still not take heavy's part.
	e.cluster.set("heavy", server.Workload{Current: 1, Ready: 0, Fit: 6})
	e.cluster.set("light", server.Workload{Current: 1, Ready: 1, Fit: 6})
	if b, err := e.metricBecomes(t, ref("default", "light", mdb), 2, 10*time.Second); b != 2 {
		t.Fatalf("light = %v (%v) while heavy waits for its step, want 2 (its part of 8), not 7", b, err)
	}
	if a, err := e.metric(t, ref("default", "heavy", mda)); err != nil || a != 1 {
		t.Fatalf("heavy = %v (%v) while its pod is not Ready, want 1 (the step waits)", a, err)
	}
	e.cluster.set("heavy", server.Workload{Current: 1, Ready: 1, Fit: 5})
	e.cluster.set("light", server.Workload{Current: 2, Ready: 2, Fit: 5})
	if a, err := e.metricBecomes(t, ref("default", "heavy", mda), 6, 10*time.Second); a != 6 {
		t.Fatalf("heavy = %v (%v) once Ready, want 6", a, err)
	}
}

// A scaler that has never seen the target's last step (just restarted, or another replica)
// still waits for it: the step's start comes from its pods' creation, not from memory.
func TestStepWaitSurvivesRestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	q := e.queue(t, "restarted")
	if err := e.broker.Admin().Publish(t.Context(), "/", q, 20); err != nil {
		t.Fatal(err)
	}
	md := map[string]string{"queue": q, "stepPods": "2", "stepTimeout": "2m"}
	r := ref("default", "restarted", md)
	now := time.Now()
	pod := func(name string, ready bool, age time.Duration) server.WorkerPod {
		return server.WorkerPod{Name: name, Ready: ready, Running: true, Created: now.Add(-age)}
	}
	old := pod("w-0", true, time.Hour)
	tests := []struct {
		name  string
		young server.WorkerPod // the second pod of the last step
		want  float64
	}{
		{"young pod not Ready: the step waits", pod("w-1", false, 10*time.Second), 2},
		{"not Ready past stepTimeout: the next step goes", pod("w-1", false, 3*time.Minute), 4},
		{"young pod Ready: the next step goes", pod("w-1", true, 10*time.Second), 4},
		{"young pod terminating: not part of a step", func() server.WorkerPod {
			p := pod("w-1", false, 10*time.Second)
			p.Terminating = true
			return p
		}(), 4},
		{"young pod finished: not part of a step", func() server.WorkerPod {
			p := pod("w-1", false, 10*time.Second)
			p.Running, p.Finished = false, true
			return p
		}(), 4},
	}
	e.cluster.add("default", "restarted", server.Workload{Current: 2, Ready: 1, Fit: 10, Pods: []server.WorkerPod{old, tests[0].young}}, md)
	for _, tc := range tests {
		ready := int32(1)
		if tc.young.Ready {
			ready = 2
		}
		e.cluster.set("restarted", server.Workload{Current: 2, Ready: ready, Fit: 10, Pods: []server.WorkerPod{old, tc.young}})
		if got, err := e.metricBecomes(t, r, tc.want, 10*time.Second); got != tc.want {
			t.Errorf("%s: %v (%v), want %v", tc.name, got, err, tc.want)
		}
	}
}

// statsPending answers ErrStatsPending for one queue while hold is set, as the management
// API does for a queue it lists without depths (just declared, or after a broker restart).
// The real broker leaves that state on its own within one statistics interval, too soon
// for a test to act in it, so this wrapper holds it open; every other read is the real one.
type statsPending struct {
	server.QueueReader
	queue string
	hold  atomic.Bool
}

func (q *statsPending) Snapshot(ctx context.Context, sel queue.Selector) (queue.Snapshot, error) {
	if sel.Queue == q.queue && q.hold.Load() {
		return queue.Snapshot{}, fmt.Errorf("%s: %w", sel.Queue, queue.ErrStatsPending)
	}
	return q.QueueReader.Snapshot(ctx, sel)
}

// A trigger whose queue has no depths yet reserves its weighted part of the room, so that
// the others do not take it first and keep it.
func TestUnreadTriggerReservesItsPart(t *testing.T) {
	pending := &statsPending{}
	pending.hold.Store(true)
	e := newEnv(t, envOptions{wrapQueue: func(r server.QueueReader) server.QueueReader {
		pending.QueueReader = r
		return pending
	}})
	qa, qb := e.queue(t, "a"), e.queue(t, "b")
	pending.queue = qb
	for _, q := range []string{qa, qb} {
		if err := e.broker.Admin().Publish(t.Context(), "/", q, 20); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	mda := map[string]string{"queue": qa, "stepPods": "100", "weight": "1"}
	mdb := map[string]string{"queue": qb, "stepPods": "100", "weight": "3"}
	e.cluster.add("default", "light", server.Workload{Current: 0, Fit: 8}, mda)
	e.cluster.add("default", "heavy", server.Workload{Current: 0, Fit: 8}, mdb)
	// heavy is unread: light gets its quarter of the 8 slots, not all of them.
	a, err := e.metric(t, ref("default", "light", mda))
	if err != nil || a != 2 {
		t.Fatalf("light = %v (%v) while heavy is unread, want 2 of 8 (weights 1:3)", a, err)
	}
	if _, err := e.client.GetMetrics(t.Context(), &pb.GetMetricsRequest{ScaledObjectRef: ref("default", "heavy", mdb), MetricName: "x"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("heavy while its queue has no statistics: %v, want Unavailable", err)
	}
	// light runs its 2; heavy is read and gets the rest.
	e.cluster.set("light", server.Workload{Current: 2, Ready: 2, Fit: 6})
	e.cluster.set("heavy", server.Workload{Current: 0, Fit: 6})
	pending.hold.Store(false)
	if b, err := e.metricBecomes(t, ref("default", "heavy", mdb), 6, 10*time.Second); b != 6 {
		t.Fatalf("heavy = %v (%v) once read, want 6", b, err)
	}
	if a, err := e.metric(t, ref("default", "light", mda)); err != nil || a != 2 {
		t.Fatalf("light = %v (%v) once heavy is read, want 2", a, err)
	}
}

// The debug log has a line when a decision changes, not one per ScaledObject per pass.
func TestDecisionLoggedWhenItChanges(t *testing.T) {
	var logs labtest.Buffer
	e := newEnv(t, envOptions{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	q := e.queue(t, "q")
	if err := e.broker.Admin().Publish(t.Context(), "/", q, 6); err != nil {
		t.Fatal(err)
	}
	md := map[string]string{"queue": q, "stepPods": "100"}
	e.cluster.add("default", "logged", server.Workload{Current: 1, Ready: 1, Fit: 2}, md)
	if v, err := e.metric(t, ref("default", "logged", md)); err != nil || v != 3 {
		t.Fatalf("GetMetrics = %v, %v; want 3 (1 + 2 that fit)", v, err)
	}
	lines := func() int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "msg=decision") && strings.Contains(l, "scaledobject=logged") {
				n++
			}
		}
		return n
	}
	for range 5 {
		e.srv.PlanNow()
	}
	if n := lines(); n != 1 {
		t.Fatalf("%d log lines for an unchanged decision over 6 passes, want 1:\n%s", n, logs.String())
	}
	e.cluster.set("logged", server.Workload{Current: 3, Ready: 3, Fit: 0})
	if v, err := e.metric(t, ref("default", "logged", md)); err != nil || v != 3 {
		t.Fatalf("GetMetrics = %v, %v; want 3", v, err)
	}
	e.srv.PlanNow()
	out := logs.String()
	if n := lines(); n != 2 || !strings.Contains(out, "limit=capacity") || !strings.Contains(out, "current=3") {
		t.Fatalf("%d log lines after the decision changed, want 2, the second with current=3:\n%s", n, out)
	}
}

func TestErrors(t *testing.T) {
	closed, err := lab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{extraBrokers: []queue.BrokerConfig{{Name: "down", URL: fmt.Sprintf("http://127.0.0.1:%d", closed)}}})
	q := e.queue(t, "q")
	okMD := map[string]string{"broker": "main", "queue": q}
	e.cluster.add("default", "ok", server.Workload{Current: 1, Ready: 1, Fit: 1}, okMD)
	downMD := map[string]string{"broker": "down", "queue": "jobs"}
	e.cluster.add("default", "down", server.Workload{Current: 1, Ready: 1, Fit: 1}, downMD)
	missingMD := map[string]string{"broker": "main", "queue": "no-such-queue-" + q}
	e.cluster.add("default", "missing", server.Workload{Current: 1, Ready: 1, Fit: 1}, missingMD)
	if _, err := e.metric(t, ref("default", "ok", okMD)); err != nil {
		t.Fatalf("baseline GetMetrics: %v", err)
	}

	tests := []struct {
		name     string
		ref      *pb.ScaledObjectRef
		code     codes.Code
		contains []string
	}{
		{name: "unknown key", ref: ref("default", "ok", map[string]string{"broker": "main", "queue": q, "messagesPerRepica": "5"}),
			code: codes.InvalidArgument, contains: []string{"messagesPerRepica", `"5"`, "unknown key"}},
		{name: "bad number", ref: ref("default", "ok", map[string]string{"broker": "main", "queue": q, "messagesPerReplica": "-3"}),
			code: codes.InvalidArgument, contains: []string{"messagesPerReplica", `"-3"`}},
		{name: "bad duration", ref: ref("default", "ok", map[string]string{"broker": "main", "queue": q, "stepTimeout": "soon"}),
			code: codes.InvalidArgument, contains: []string{"stepTimeout", `"soon"`}},
		{name: "bad footprint", ref: ref("default", "ok", map[string]string{"broker": "main", "queue": q, "footprint": "cpu=lots"}),
			code: codes.InvalidArgument, contains: []string{"footprint", "cpu=lots"}},
		{name: "queue and pattern", ref: ref("default", "ok", map[string]string{"broker": "main", "queue": q, "queuePattern": "^x"}),
			code: codes.InvalidArgument, contains: []string{"queuePattern", `"^x"`}},
		{name: "unknown broker", ref: ref("default", "ok", map[string]string{"broker": "nope", "queue": q}),
			code: codes.InvalidArgument, contains: []string{"broker", `"nope"`, "main"}},
		{name: "no queue", ref: ref("default", "ok", map[string]string{"broker": "main"}),
			code: codes.InvalidArgument, contains: []string{"queue"}},
		{name: "unknown scaledobject", ref: ref("default", "ghost", okMD),
			code: codes.NotFound, contains: []string{"default/ghost"}},
		{name: "missing queue", ref: ref("default", "missing", missingMD),
			code: codes.NotFound, contains: []string{"no-such-queue-"}},
		{name: "broker down", ref: ref("default", "down", downMD),
			code: codes.Unavailable, contains: []string{`"down"`, "unreachable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.metric(t, tc.ref)
			checkStatus(t, "GetMetrics", err, tc.code, tc.contains)
			_, err = e.client.IsActive(t.Context(), tc.ref)
			checkStatus(t, "IsActive", err, tc.code, tc.contains)
			_, err = e.client.GetMetricSpec(t.Context(), tc.ref)
			if tc.code == codes.InvalidArgument {
				checkStatus(t, "GetMetricSpec", err, tc.code, tc.contains)
			} else if err != nil {
				t.Errorf("GetMetricSpec on valid metadata: %v, want success", err)
			}
		})
	}

	t.Run("not ready while a broker in use is down", func(t *testing.T) {
		if err := e.srv.Ready(); err == nil || !strings.Contains(err.Error(), `"down"`) {
			t.Errorf("Ready() = %v, want an error naming broker \"down\"", err)
		}
	})

	t.Run("stale snapshot", func(t *testing.T) {
		e.skew.Store(int64(time.Minute)) // the last read now looks a minute old
		defer e.skew.Store(0)
		_, err := e.client.GetMetrics(t.Context(), &pb.GetMetricsRequest{ScaledObjectRef: ref("default", "ok", okMD)})
		checkStatus(t, "GetMetrics", err, codes.Unavailable, []string{"ago", "stale"})
	})
}

func checkStatus(t *testing.T, call string, err error, code codes.Code, contains []string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: code %v (%v), want %v", call, got, err, code)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not mention %q", call, err, s)
		}
	}
}

func TestStreamIsActivePushesOnPublish(t *testing.T) {
	e := newEnv(t, envOptions{})
	q := e.queue(t, "q")
	md := map[string]string{"queue": q}
	e.cluster.add("default", "w", server.Workload{Fit: 5}, md)
	if _, err := e.metric(t, ref("default", "w", md)); err != nil {
		t.Fatalf("first read: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := e.client.StreamIsActive(ctx, ref("default", "w", md))
	if err != nil {
		t.Fatalf("StreamIsActive: %v", err)
	}
	first, err := stream.Recv()
	if err != nil || first.Result {
		t.Fatalf("first push = %v, %v; want false at once", first, err)
	}
	start := time.Now()
	if err := e.broker.Admin().Publish(t.Context(), "/", q, 3); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := stream.Recv()
	if err != nil || !got.Result {
		t.Fatalf("push after publish = %v, %v; want true", got, err)
	}
	t.Logf("true pushed %v after the publish (broker refresh %v, management sample lag included)", time.Since(start).Round(time.Millisecond), testRefresh)

	// Server shutdown ends the stream.
	e.srv.Close()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("after Close: Recv error %v, want Unavailable", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A ScaledObject whose trigger changes is planned with the new trigger, although the
// planner remembers each listed trigger's parse from one pass to the next.
func TestChangedTriggerParsedAgain(t *testing.T) {
	e := newEnv(t, envOptions{})
	q := e.queue(t, "jobs")
	if err := e.broker.Admin().Publish(t.Context(), "/", q, 7); err != nil {
		t.Fatalf("publish: %v", err)
	}
	w := server.Workload{Current: 100, Ready: 100, Fit: 100}
	one := map[string]string{"scalerAddress": "headroom:9090", "broker": "main", "queue": q}
	e.cluster.add("reparse", "worker", w, one)
	if v, err := e.metricBecomes(t, ref("reparse", "worker", one), 7, 10*time.Second); err != nil || v != 7 {
		t.Fatalf("GetMetrics with one message per replica = %v, %v; want 7", v, err)
	}
	seven := map[string]string{"scalerAddress": "headroom:9090", "broker": "main", "queue": q, "messagesPerReplica": "7"}
	e.cluster.remove("reparse")
	e.cluster.add("reparse", "worker", w, seven)
	if v, err := e.metricBecomes(t, ref("reparse", "worker", seven), 1, 10*time.Second); err != nil || v != 1 {
		t.Fatalf("GetMetrics with seven messages per replica = %v, %v; want 1", v, err)
	}
	// The plan itself, not only the answer to a call that names the new metadata.
	waitFor(t, "the plan's need from the new trigger", func() bool {
		return soGauge(t, e.reg, "headroom_need_replicas", "reparse", "worker") == 1
	})
}

// soGauge is the value of one ScaledObject's sample of a gauge family, -1 when absent.
func soGauge(t *testing.T, reg *prometheus.Registry, name, ns, so string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["scaledobject"] == so {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// The planner runs once per broker refresh: a refresh's period is the interval plus the
// read's own time, and a fallback timer of one interval used to fire just before each
// refresh, doubling the passes over every ScaledObject.
func TestOnePassPerRefresh(t *testing.T) {
	e := newEnv(t, envOptions{})
	q := e.queue(t, "jobs")
	md := map[string]string{"queue": q}
	e.cluster.add("default", "worker", server.Workload{Fit: 1}, md)
	if _, err := e.metric(t, ref("default", "worker", md)); err != nil {
		t.Fatal(err)
	}
	read := func() (passes, refreshes float64) {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "headroom_plan_duration_seconds" {
				passes = float64(mf.GetMetric()[0].GetHistogram().GetSampleCount())
			}
		}
		return passes, counterValue(t, e.reg, "headroom_broker_refreshes_total")
	}
	p0, r0 := read()
	time.Sleep(20 * testRefresh)
	p1, r1 := read()
	if r1-r0 < 5 {
		t.Fatalf("%v refreshes in %v, want about 20", r1-r0, 20*testRefresh)
	}
	if passes, refreshes := p1-p0, r1-r0; passes > refreshes+2 {
		t.Errorf("%v planning passes for %v refreshes, want one each", passes, refreshes)
	}
}
