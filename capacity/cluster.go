package capacity

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

// Defaults for Options.
const (
	DefaultMetricsInterval = 15 * time.Second
	DefaultCRDInterval     = 30 * time.Second
)

// Options configures a Cluster. Client is required; everything else is optional.
type Options struct {
	Client kubernetes.Interface
	// Dynamic reads KEDA ScaledObjects and the /scale subresource of targets other than
	// Deployments and StatefulSets; nil disables both.
	Dynamic dynamic.Interface
	// Metrics reads live node usage from metrics.k8s.io every MetricsInterval; nil, or an API
	// that is not served, means usage is unknown and only requests count.
	Metrics         metricsclient.Interface
	MetricsInterval time.Duration // 0 means DefaultMetricsInterval
	// CRDInterval is how often to look again for the ScaledObject CRD while it is not
	// installed; 0 means DefaultCRDInterval.
	CRDInterval time.Duration
	// Namespace limits pods, workloads and ScaledObjects to one namespace; "" means all.
	// Nodes are always cluster-wide; with a namespace, pods of other namespaces are not
	// counted in requests, so use it only where the namespace owns its nodes.
	Namespace string
	// ScalerAddresses are the addresses KEDA uses to reach this scaler (trigger metadata
	// scalerAddress); ScaledObjectsFor matches triggers against them.
	ScalerAddresses []string
	// NoTransform keeps whole objects in the caches. It exists to measure what the transform
	// saves; never set it in production.
	NoTransform bool
}

// Validate reports a missing client or a negative interval.
func (o Options) Validate() error {
	if o.Client == nil {
		return errors.New("capacity options: Client is nil")
	}
	if o.MetricsInterval < 0 {
		return fmt.Errorf("capacity options: metrics interval %s is negative", o.MetricsInterval)
	}
	if o.CRDInterval < 0 {
		return fmt.Errorf("capacity options: CRD interval %s is negative", o.CRDInterval)
	}
	return nil
}

// Cluster watches nodes, pods, Deployments, StatefulSets and KEDA ScaledObjects through one
// shared informer factory and answers fit and target queries from memory. Per-node requested
// resources are kept up to date by pod events, so a query never walks the pods.
type Cluster struct {
	opts    Options
	factory informers.SharedInformerFactory
	nodes   cache.SharedIndexInformer
	pods    cache.SharedIndexInformer
	// Listers over the workload caches, made once: the factory's accessors look the informer
	// up on every call.
	deployments  appslisters.DeploymentLister
	statefulSets appslisters.StatefulSetLister
	synced       []cache.InformerSynced
	dynamic      dynamicinformer.DynamicSharedInformerFactory
	dynTf        cache.TransformFunc
	soMu         sync.Mutex
	soInf        cache.SharedIndexInformer
	soSynced     cache.InformerSynced
	// soVersion counts ScaledObject events; soList is the parsed, sorted list as of
	// soListAt, and soParsed each object's parse by namespace/name with its resourceVersion.
	soVersion atomic.Uint64
	soList    []ScaledObject
	soListAt  uint64
	soParsed  map[soKey]parsedScaledObject

	tmplMu sync.Mutex
	tmpl   map[TargetRef]templateMemo // what each target's workload template says

	mu     sync.RWMutex
	state  map[string]*nodeState // by node name
	list   []*nodeState          // the present nodes, for fast iteration
	podsBy map[string]podShare   // by namespace/name: what each bound pod adds to its node

	version atomic.Uint64
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	closed  atomic.Bool
}

type nodeState struct {
	node      Node // without Requested and Used
	present   bool // the Node object exists
	index     int  // position in Cluster.list when present
	requested Resources
	used      Resources
	usedKnown bool
}

type podShare struct {
	node string
	req  Resources
}

// New builds a Cluster; nothing is watched until Start. It returns an error only for invalid
// options.
func New(opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.MetricsInterval == 0 {
		opts.MetricsInterval = DefaultMetricsInterval
	}
	if opts.CRDInterval == 0 {
		opts.CRDInterval = DefaultCRDInterval
	}
	c := &Cluster{opts: opts, state: map[string]*nodeState{}, podsBy: map[string]podShare{}}
	fopts := []informers.SharedInformerOption{informers.WithNamespace(opts.Namespace)}
	if !opts.NoTransform {
		fopts = append(fopts, informers.WithTransform(transform))
	}
	c.factory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0, fopts...)
	c.nodes = c.factory.Core().V1().Nodes().Informer()
	c.pods = c.factory.Core().V1().Pods().Informer()
	deps := c.factory.Apps().V1().Deployments().Informer()
	sts := c.factory.Apps().V1().StatefulSets().Informer()
	c.deployments = appslisters.NewDeploymentLister(deps.GetIndexer())
	c.statefulSets = appslisters.NewStatefulSetLister(sts.GetIndexer())

	nodeReg, err := c.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onNode(obj, false) },
		UpdateFunc: func(_, obj any) { c.onNode(obj, false) },
		DeleteFunc: func(obj any) { c.onNode(obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	if err := c.pods.AddIndexers(cache.Indexers{labelIndex: podLabelKeys}); err != nil {
		return nil, fmt.Errorf("index pods by label: %w", err)
	}
	podReg, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onPod(obj, false) },
		UpdateFunc: func(_, obj any) { c.onPod(obj, false) },
		DeleteFunc: func(obj any) { c.onPod(obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	bump := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.version.Add(1) },
		UpdateFunc: func(oldObj, newObj any) {
			if workloadChanged(oldObj, newObj) {
				c.version.Add(1)
			}
		},
		DeleteFunc: func(any) { c.version.Add(1) },
	}
	depReg, err := deps.AddEventHandler(bump)
	if err != nil {
		return nil, fmt.Errorf("watch deployments: %w", err)
	}
	stsReg, err := sts.AddEventHandler(bump)
	if err != nil {
		return nil, fmt.Errorf("watch statefulsets: %w", err)
	}
	c.synced = []cache.InformerSynced{nodeReg.HasSynced, podReg.HasSynced, depReg.HasSynced, stsReg.HasSynced}
	if opts.Dynamic != nil {
		c.dynamic = dynamicinformer.NewFilteredDynamicSharedInformerFactory(opts.Dynamic, 0, opts.Namespace, nil)
		if !opts.NoTransform {
			c.dynTf = transform
		}
	}
	return c, nil
}

// Start starts the informers, the usage poller and the search for the ScaledObject CRD. It
// returns at once; WaitForSync waits for the caches. The watches run until ctx ends or Close.
func (c *Cluster) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("capacity: cluster already started")
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.factory.Start(ctx.Done())
	if c.dynamic != nil {
		if !c.startScaledObjects(ctx) {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.waitForCRD(ctx)
			}()
		}
	}
	if c.opts.Metrics != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.pollUsage(ctx)
		}()
	}
	return nil
}

// Close stops every watch and goroutine and waits for them.
func (c *Cluster) Close() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	c.factory.Shutdown()
	if c.dynamic != nil {
		c.dynamic.Shutdown()
	}
}

// Synced reports whether every cache has synced: until then answers would be wrong (too
// much room, no pods), so readiness must fail.
func (c *Cluster) Synced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	c.soMu.Lock()
	so := c.soSynced
	c.soMu.Unlock()
	return so == nil || so()
}

// WaitForSync waits until Synced or ctx ends.
func (c *Cluster) WaitForSync(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.Synced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for cluster caches: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Version changes whenever anything the answers depend on changes (an informer event or a
// usage sample), so callers can cache per version.
func (c *Cluster) Version() uint64 { return c.version.Load() }

func (c *Cluster) onNode(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state[n.Name]
	if deleted {
		if st != nil && st.present {
			st.present = false
			last := c.list[len(c.list)-1]
			c.list[st.index], last.index = last, st.index
			c.list = c.list[:len(c.list)-1]
			if st.requested == (Resources{}) {
				delete(c.state, n.Name)
			}
		}
	} else {
		if st == nil {
			st = &nodeState{}
			c.state[n.Name] = st
		}
		node := nodeFromAPI(n)
		if st.present && sameNode(st.node, node) {
			// A heartbeat: nothing a fit reads changed, so nothing needs planning again.
			st.node = node
			return
		}
		st.node = node
		if !st.present {
			st.present, st.index = true, len(c.list)
			c.list = append(c.list, st)
		}
	}
	c.version.Add(1)
}

// sameNode reports whether two readings of a node agree on everything a fit reads.
func sameNode(a, b Node) bool {
	return a.Name == b.Name && a.Schedulable == b.Schedulable && a.Allocatable == b.Allocatable &&
		maps.Equal(a.Labels, b.Labels) && slices.Equal(a.Taints, b.Taints)
}

// workloadChanged reports whether an update of a Deployment or StatefulSet changed what a
// target reads: its generation (spec: replicas, selector, template), its spec or ready
// replicas. Status-only writes (observed generation, conditions, available counts) do not.
func workloadChanged(oldObj, newObj any) bool {
	o, ok1 := workloadOf(oldObj)
	n, ok2 := workloadOf(newObj)
	return !ok1 || !ok2 || o.generation != n.generation || o.spec != n.spec || o.ready != n.ready
}

func nodeFromAPI(n *corev1.Node) Node {
	out := Node{
		Name:   n.Name,
		Labels: n.Labels,
		Allocatable: Resources{
			MilliCPU: n.Status.Allocatable.Cpu().MilliValue(),
			Memory:   n.Status.Allocatable.Memory().Value(),
			Pods:     n.Status.Allocatable.Pods().Value(),
		},
	}
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	out.Schedulable = ready && !n.Spec.Unschedulable
	for _, t := range n.Spec.Taints {
		out.Taints = append(out.Taints, Taint{Key: t.Key, Value: t.Value, Effect: string(t.Effect)})
	}
	return out
}

func asPodInfo(obj any) (*podInfo, bool) {
	switch p := obj.(type) {
	case *podInfo:
		return p, true
	case *corev1.Pod: // NoTransform
		return newPodInfo(p), true
	}
	return nil, false
}

func (c *Cluster) onPod(obj any, deleted bool) {
	key := ""
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		key, obj = t.Key, t.Obj
	}
	p, ok := asPodInfo(obj)
	if !ok {
		return
	}
	if key == "" {
		key = p.Namespace + "/" + p.Name
	}
	var share podShare
	counted := !deleted && p.NodeName != "" && !p.terminal()
	if counted {
		share = podShare{node: p.NodeName, req: p.Requests}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.podsBy[key]
	if had && counted && old == share {
		return // no change in what the pod holds; readiness changes do not bump versions of fit
	}
	if had {
		if st := c.state[old.node]; st != nil {
			st.requested = sub(st.requested, old.req)
			if !st.present && st.requested == (Resources{}) {
				delete(c.state, old.node)
			}
		}
		delete(c.podsBy, key)
	}
	if counted {
		st := c.state[share.node]
		if st == nil {
			st = &nodeState{node: Node{Name: share.node}}
			c.state[share.node] = st
		}
		st.requested = add(st.requested, share.req)
		c.podsBy[key] = share
	}
	c.version.Add(1)
}

func add(a, b Resources) Resources {
	return Resources{MilliCPU: a.MilliCPU + b.MilliCPU, Memory: a.Memory + b.Memory, Pods: a.Pods + b.Pods}
}

func sub(a, b Resources) Resources {
	return Resources{MilliCPU: a.MilliCPU - b.MilliCPU, Memory: a.Memory - b.Memory, Pods: a.Pods - b.Pods}
}

func (st *nodeState) snapshot() Node {
	n := st.node
	n.Requested = st.requested
	n.Used, n.UsedKnown = st.used, st.usedKnown
	return n
}

// Nodes returns every node with its requests and, when known, its live usage, sorted by name.
// The label maps are shared with the cache: do not modify them.
func (c *Cluster) Nodes() []Node {
	c.mu.RLock()
	out := make([]Node, 0, len(c.list))
	for _, st := range c.list {
		out = append(out, st.snapshot())
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Fit is Fit over the current nodes, computed in place without copying them.
func (c *Cluster) Fit(fp Footprint, cons Constraints, reserve Resources) int {
	if fp.Validate() != nil {
		return 0
	}
	m := cons.matcher()
	c.mu.RLock()
	defer c.mu.RUnlock()
	total := 0
	for _, st := range c.list {
		n := st.snapshot()
		total += fitNode(&n, fp, &m, reserve)
	}
	return total
}

// pollUsage samples node usage from metrics.k8s.io until ctx ends. A failed sample (API not
// served, metrics-server not ready) makes usage unknown rather than stale.
func (c *Cluster) pollUsage(ctx context.Context) {
	t := time.NewTicker(c.opts.MetricsInterval)
	defer t.Stop()
	for {
		c.sampleUsage(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Cluster) sampleUsage(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.MetricsInterval)
	defer cancel()
	list, err := c.opts.Metrics.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{})
	used := map[string]Resources{}
	if err == nil {
		for _, m := range list.Items {
			used[m.Name] = Resources{MilliCPU: m.Usage.Cpu().MilliValue(), Memory: m.Usage.Memory().Value()}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for name, st := range c.state {
		u, known := used[name]
		if u != st.used || known != st.usedKnown {
			st.used, st.usedKnown = u, known
			changed = true
		}
	}
	if changed {
		c.version.Add(1)
	}
}

// SampleUsage reads node usage from metrics.k8s.io now instead of waiting for the next tick.
func (c *Cluster) SampleUsage(ctx context.Context) {
	if c.opts.Metrics != nil {
		c.sampleUsage(ctx)
	}
}

var _ runtime.Object = (*podInfo)(nil)
