package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// WorkerServiceTimeHeader is the AMQP message header (an integer, milliseconds) that
// overrides WorkerOptions.ServiceTime for one message, so that a publisher can replay the
// service times of a real trace.
const WorkerServiceTimeHeader = "x-service-time-ms"

// Worker emulator defaults.
const (
	DefaultWorkerPrefetch      = 1
	DefaultWorkerServiceTime   = time.Second
	DefaultWorkerRetryInterval = 500 * time.Millisecond
)

// WorkerOptions configures StartWorkers.
type WorkerOptions struct {
	// Client reads the pods; Namespace and Selector (a label selector, required) say which.
	Client    kubernetes.Interface
	Namespace string
	Selector  string
	// AMQPURL is the broker; its host must be a loopback address.
	AMQPURL string
	// Queue is consumed by every worker.
	Queue string
	// Prefetch is the consumer's prefetch count; 0 means DefaultWorkerPrefetch.
	Prefetch int
	// ServiceTime is how long a worker holds each message before acknowledging it (unless
	// the message sets WorkerServiceTimeHeader); 0 means DefaultWorkerServiceTime.
	ServiceTime time.Duration
	// RetryInterval is the pause before a worker reconnects after its connection failed or
	// was closed by the broker; 0 means DefaultWorkerRetryInterval.
	RetryInterval time.Duration
	// Logger receives one line per worker start, stop and connection error; nil discards.
	Logger *slog.Logger
}

// Validate reports the first invalid field. It does not change o.
func (o WorkerOptions) Validate() error {
	if o.Client == nil {
		return errors.New("worker options: nil Kubernetes client")
	}
	if o.Namespace == "" {
		return errors.New("worker options: empty namespace")
	}
	if _, err := labels.Parse(o.Selector); err != nil || o.Selector == "" {
		return fmt.Errorf("worker options: selector %q: want a non-empty label selector (%v)", o.Selector, err)
	}
	if o.Queue == "" {
		return errors.New("worker options: empty queue")
	}
	if o.Prefetch < 0 {
		return fmt.Errorf("worker options: prefetch %d is negative", o.Prefetch)
	}
	if o.ServiceTime < 0 {
		return fmt.Errorf("worker options: service time %v is negative", o.ServiceTime)
	}
	if o.RetryInterval < 0 {
		return fmt.Errorf("worker options: retry interval %v is negative", o.RetryInterval)
	}
	u, err := amqp.ParseURI(o.AMQPURL)
	if err != nil {
		return fmt.Errorf("worker options: AMQP URL: %w", err)
	}
	if !isLoopbackHost(u.Host) {
		return fmt.Errorf("worker options: AMQP host %q is not a loopback address", u.Host)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// WorkerStats counts what the emulated workers did.
type WorkerStats struct {
	// Connected is the number of pods with an open consumer; Busy those holding a message.
	Connected, Busy int
	// Acked is the number of messages processed and acknowledged.
	Acked int64
	// KilledBusy is the number of times a pod went away while it held a message (which the
	// broker then requeued): the cost that busy-aware scale-down avoids.
	KilledBusy int64
}

// Workers emulates the processes of a scale target's pods, which KWOK does not run: for each
// Running pod it opens one AMQP connection whose TCP source address is the pod's IP (KWOK
// hands out addresses in 127.16.0.0/16, which Linux routes over loopback), so that the
// broker's connection and consumer lists name the pod, consumes with a prefetch, holds each
// message for its service time and acknowledges it. When the pod is deleted (or starts
// terminating) the connection closes without acknowledging, and the broker requeues the
// message in hand, as it would for a killed worker.
type Workers struct {
	opts WorkerOptions
	log  *slog.Logger

	factory informers.SharedInformerFactory
	stop    chan struct{}
	wg      sync.WaitGroup

	mu     sync.Mutex
	closed bool
	pods   map[types.UID]*podWorker

	acked, killedBusy atomic.Int64
}

// Why a pod's worker stops: its pod went away, or the emulator closed.
var (
	errPodGone       = errors.New("pod gone")
	errWorkersClosed = errors.New("workers closed")
)

type podWorker struct {
	name      string
	cancel    context.CancelCauseFunc
	connected atomic.Bool
	busy      atomic.Bool
}

// StartWorkers starts the emulator and returns once its pod cache has synced; workers for the
// pods already Running start at once.
func StartWorkers(ctx context.Context, opts WorkerOptions) (*Workers, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = DefaultWorkerPrefetch
	}
	if opts.ServiceTime == 0 {
		opts.ServiceTime = DefaultWorkerServiceTime
	}
	if opts.RetryInterval == 0 {
		opts.RetryInterval = DefaultWorkerRetryInterval
	}
	w := &Workers{
		opts: opts, log: opts.Logger, stop: make(chan struct{}),
		pods: map[types.UID]*podWorker{},
	}
	if w.log == nil {
		w.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w.factory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = opts.Selector }))
	inf := w.factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.sync(obj) },
		UpdateFunc: func(_, obj any) { w.sync(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				w.remove(p.UID)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("start workers: %w", err)
	}
	w.factory.Start(w.stop)
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		w.Close()
		return nil, fmt.Errorf("start workers: pod cache of %s/%s did not sync", opts.Namespace, opts.Selector)
	}
	return w, nil
}

// sync starts or stops the worker of one pod from its current state.
func (w *Workers) sync(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	alive := p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil
	if !alive {
		w.remove(p.UID)
		return
	}
	ip := net.ParseIP(p.Status.PodIP)
	if ip == nil || !ip.IsLoopback() {
		w.log.Warn("pod IP is not a loopback address: no worker", "pod", p.Name, "ip", p.Status.PodIP)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.pods[p.UID] != nil {
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	pw := &podWorker{name: p.Name, cancel: cancel}
	w.pods[p.UID] = pw
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.run(ctx, pw, ip)
	}()
}

func (w *Workers) remove(uid types.UID) {
	w.mu.Lock()
	pw := w.pods[uid]
	delete(w.pods, uid)
	w.mu.Unlock()
	if pw != nil {
		pw.cancel(errPodGone)
	}
}

// run is one pod's worker: connect from the pod's address, consume, reconnect after broker
// failures, until ctx ends (the pod went away).
func (w *Workers) run(ctx context.Context, pw *podWorker, ip net.IP) {
	w.log.Info("worker start", "pod", pw.name, "ip", ip.String())
	defer w.log.Info("worker stop", "pod", pw.name)
	for ctx.Err() == nil {
		err := w.consume(ctx, pw, ip)
		pw.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("worker connection lost", "pod", pw.name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.opts.RetryInterval):
		}
	}
}

func (w *Workers) consume(ctx context.Context, pw *podWorker, ip net.IP) error {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(pw.name)
	conn, err := amqp.DialConfig(w.opts.AMQPURL, amqp.Config{
		Properties: props,
		Heartbeat:  5 * time.Second,
		Locale:     "en_US",
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
			return d.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		return fmt.Errorf("dial from %s: %w", ip, err)
	}
	// Closing the connection without acknowledging is what makes the broker requeue the
	// message in hand, as for a killed process.
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(w.opts.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch %d: %w", w.opts.Prefetch, err)
	}
	deliveries, err := ch.Consume(w.opts.Queue, pw.name, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %q: %w", w.opts.Queue, err)
	}
	pw.connected.Store(true)
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case d, ok = <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
		}
		pw.busy.Store(true)
		t := time.NewTimer(serviceTime(d, w.opts.ServiceTime))
		select {
		case <-ctx.Done():
			t.Stop()
			pw.busy.Store(false)
			if errors.Is(context.Cause(ctx), errPodGone) {
				w.killedBusy.Add(1)
			}
			return ctx.Err()
		case <-t.C:
		}
		err := d.Ack(false)
		pw.busy.Store(false)
		if err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		w.acked.Add(1)
	}
}

// serviceTime reads WorkerServiceTimeHeader from d, else returns def.
func serviceTime(d amqp.Delivery, def time.Duration) time.Duration {
	var ms int64
	switch v := d.Headers[WorkerServiceTimeHeader].(type) {
	case int8:
		ms = int64(v)
	case int16:
		ms = int64(v)
	case int32:
		ms = int64(v)
	case int64:
		ms = v
	case int:
		ms = int64(v)
	case float64:
		ms = int64(v)
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return def
		}
		ms = n
	default:
		return def
	}
	if ms < 0 {
		return def
	}
	return time.Duration(ms) * time.Millisecond
}

// Stats returns the current counters.
func (w *Workers) Stats() WorkerStats {
	s := WorkerStats{Acked: w.acked.Load(), KilledBusy: w.killedBusy.Load()}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, pw := range w.pods {
		if pw.connected.Load() {
			s.Connected++
		}
		if pw.busy.Load() {
			s.Busy++
		}
	}
	return s
}

// BusyPods returns the names of the pods whose worker holds a message now.
func (w *Workers) BusyPods() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for _, pw := range w.pods {
		if pw.busy.Load() {
			names = append(names, pw.name)
		}
	}
	return names
}

// Close stops watching pods, closes every worker's connection (their messages in hand are
// requeued) and waits for all of them. It is safe to call more than once.
func (w *Workers) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	pods := w.pods
	w.pods = map[types.UID]*podWorker{}
	w.mu.Unlock()
	close(w.stop)
	w.factory.Shutdown()
	for _, pw := range pods {
		pw.cancel(errWorkersClosed)
	}
	w.wg.Wait()
}
