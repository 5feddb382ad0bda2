package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Deletion-cost patch defaults: the client-side rate limit (token bucket).
const (
	DefaultPatchQPS   = 10
	DefaultPatchBurst = 20
	// patchTimeout bounds one patch request.
	patchTimeout = 10 * time.Second
	// patchMemory is how long a patch just sent is trusted over the (possibly not yet
	// updated) pod cache, so the same patch is not sent twice.
	patchMemory = 30 * time.Second
)

// PodPatcher patches one pod's annotations with a JSON merge patch. KubePods implements it.
type PodPatcher interface {
	PatchPod(ctx context.Context, namespace, name string, patch []byte) error
}

// KubePods patches pods through the API server (RBAC: patch on pods).
type KubePods struct{ Client kubernetes.Interface }

// PatchPod sends a merge patch to a pod.
func (k KubePods) PatchPod(ctx context.Context, namespace, name string, patch []byte) error {
	_, err := k.Client.CoreV1().Pods(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// costKey names one pod.
type costKey struct{ namespace, pod string }

// podCost is the deletion cost one pod should have (nil: no annotation) and has now.
type podCost struct {
	key       costKey
	want, has *int32
}

// costPatcher keeps the deletion costs of the served targets' pods equal to what the last
// plan wants. The planner hands it the wanted state (set never blocks: a newer state replaces
// an unsent one); one goroutine patches, rate-limited, so neither the planner nor an RPC ever
// waits on the API server.
type costPatcher struct {
	pods    PodPatcher
	limiter flowcontrol.RateLimiter
	log     *slog.Logger
	count   func(namespace string, n int)

	mu      sync.Mutex
	pending map[costKey]podCost
	wake    chan struct{}
	// sent remembers recent patches, so the cache lag does not make them repeat.
	sent map[costKey]sentCost
}

type sentCost struct {
	cost *int32
	at   time.Time
}

func newCostPatcher(pods PodPatcher, qps float64, burst int, log *slog.Logger, count func(string, int)) *costPatcher {
	if qps <= 0 {
		qps = DefaultPatchQPS
	}
	if burst <= 0 {
		burst = DefaultPatchBurst
	}
	return &costPatcher{
		pods: pods, limiter: flowcontrol.NewTokenBucketRateLimiter(float32(qps), burst),
		log: log, count: count,
		pending: map[costKey]podCost{}, wake: make(chan struct{}, 1), sent: map[costKey]sentCost{},
	}
}

// set replaces the wanted costs with those of one plan. Pods whose cost is already right are
// dropped; the rest wait for the patch loop.
func (c *costPatcher) set(costs []podCost) {
	now := time.Now()
	c.mu.Lock()
	c.pending = map[costKey]podCost{}
	for _, pc := range costs {
		has := pc.has
		if s, ok := c.sent[pc.key]; ok && now.Sub(s.at) < patchMemory {
			has = s.cost
		}
		if !sameCost(pc.want, has) {
			c.pending[pc.key] = pc
		}
	}
	for k, s := range c.sent {
		if now.Sub(s.at) >= patchMemory {
			delete(c.sent, k)
		}
	}
	n := len(c.pending)
	c.mu.Unlock()
	if n > 0 {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func sameCost(a, b *int32) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// next takes one pending patch, busiest pods first (protecting work matters more than
// lowering a stale cost), then by name.
func (c *costPatcher) next() (podCost, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return podCost{}, false
	}
	all := make([]podCost, 0, len(c.pending))
	for _, pc := range c.pending {
		all = append(all, pc)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := value(all[i].want), value(all[j].want)
		if a != b {
			return a > b
		}
		if all[i].key.namespace != all[j].key.namespace {
			return all[i].key.namespace < all[j].key.namespace
		}
		return all[i].key.pod < all[j].key.pod
	})
	delete(c.pending, all[0].key)
	return all[0], true
}

func value(p *int32) int64 {
	if p == nil {
		return 0
	}
	return int64(*p)
}

// run patches until ctx ends.
func (c *costPatcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		for {
			pc, ok := c.next()
			if !ok {
				break
			}
			if err := c.limiter.Wait(ctx); err != nil {
				return
			}
			if err := c.patch(ctx, pc); err != nil {
				// The next plan asks again (the cache still shows the old value).
				c.log.Warn("patch pod deletion cost", "namespace", pc.key.namespace, "pod", pc.key.pod, "err", err)
				continue
			}
			c.mu.Lock()
			c.sent[pc.key] = sentCost{cost: pc.want, at: time.Now()}
			c.mu.Unlock()
			c.count(pc.key.namespace, 1)
		}
	}
}

func (c *costPatcher) patch(ctx context.Context, pc podCost) error {
	var v any // nil removes the annotation
	if pc.want != nil {
		v = strconv.Itoa(int(*pc.want))
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{DeletionCostAnnotation: v}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, patchTimeout)
	defer cancel()
	return c.pods.PatchPod(ctx, pc.key.namespace, pc.key.pod, body)
}

// wantedCosts is the deletion cost every pod of one target should have: busy pods the work
// they hold, idle pods none. With busy workers unknown, costs set from an earlier reading are
// stale and removed (a stale high cost would protect a pod that is now idle and expose a busy
// one). StatefulSets ignore deletion costs: none is set.
func wantedCosts(namespace string, w Workload, v busyView) []podCost {
	var out []podCost
	for _, p := range w.Pods {
		pc := podCost{key: costKey{namespace, p.Name}, has: p.DeletionCost}
		if v.known && w.Kind != "StatefulSet" && p.Running {
			if h := v.held[p.Name]; h > 0 {
				c := deletionCost(h)
				pc.want = &c
			}
		}
		out = append(out, pc)
	}
	return out
}
