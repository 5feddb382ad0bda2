package simulate

import (
	"github.com/headroom-autoscaler/headroom/capacity"
)

// nodeState is one node of the model: its allocatable, the other tenants' pods, and the
// worker pods bound to it.
type nodeState struct {
	name        string
	labels      map[string]string
	allocatable capacity.Resources
	tenantReq   capacity.Resources // Pods: how many tenant pods
	tenantUse   capacity.Resources
	workers     int64 // worker pods bound here
	busy        int64 // of which hold at least one message
}

// workerSpec is what one worker requests and uses.
type workerSpec struct {
	req        capacity.Footprint
	idle, busy capacity.Resources
}

// requested is the node's requests with its workers (what the scheduler sees).
func (n *nodeState) requested(w *workerSpec) capacity.Resources {
	return capacity.Resources{
		MilliCPU: n.tenantReq.MilliCPU + n.workers*w.req.MilliCPU,
		Memory:   n.tenantReq.Memory + n.workers*w.req.Memory,
		Pods:     n.tenantReq.Pods + n.workers,
	}
}

// used is the node's real usage: tenants plus idle and busy workers. CPU is compressible:
// usage never exceeds allocatable (the containers are throttled; the model does not slow
// their service down). Memory is not: it can exceed allocatable, which is overcommit.
func (n *nodeState) used(w *workerSpec) capacity.Resources {
	idle := n.workers - n.busy
	return capacity.Resources{
		MilliCPU: min(n.tenantUse.MilliCPU+idle*w.idle.MilliCPU+n.busy*w.busy.MilliCPU, n.allocatable.MilliCPU),
		Memory:   n.tenantUse.Memory + idle*w.idle.Memory + n.busy*w.busy.Memory,
	}
}

// overcommitted reports memory use above allocatable: the node is at risk of OOM kills.
func (n *nodeState) overcommitted(w *workerSpec) bool {
	return n.tenantUse.Memory+(n.workers-n.busy)*w.idle.Memory+n.busy*w.busy.Memory > n.allocatable.Memory
}

// capacityNode is the node as capacity.Fit sees it. withUsage adds live usage (what the
// scaler reads from metrics.k8s.io); without it the node is what the scheduler sees.
func (n *nodeState) capacityNode(w *workerSpec, withUsage bool) capacity.Node {
	c := capacity.Node{
		Name: n.name, Labels: n.labels, Schedulable: true,
		Allocatable: n.allocatable, Requested: n.requested(w),
	}
	if withUsage {
		c.Used, c.UsedKnown = n.used(w), true
	}
	return c
}

// schedule picks the node for one more worker the way kube-scheduler's default profile
// does in the cases the model has: filter by requests (NodeResourcesFit, here
// capacity.FitNode with no usage and no reserve), then score by LeastAllocated — the mean
// over CPU and memory of (allocatable − requested after placement) / allocatable — and take
// the best, the first node on a tie (kube-scheduler breaks ties at random). -1 when no node
// fits: the pod stays Pending.
func schedule(nodes []nodeState, w *workerSpec) int {
	best, bestScore := -1, -1.0
	for i := range nodes {
		n := &nodes[i]
		if capacity.FitNode(n.capacityNode(w, false), w.req, capacity.Constraints{}, capacity.Resources{}) < 1 {
			continue
		}
		r := n.requested(w)
		score, k := 0.0, 0
		if a := n.allocatable.MilliCPU; a > 0 {
			score += float64(a-r.MilliCPU-w.req.MilliCPU) / float64(a)
			k++
		}
		if a := n.allocatable.Memory; a > 0 {
			score += float64(a-r.Memory-w.req.Memory) / float64(a)
			k++
		}
		if k > 0 {
			score /= float64(k)
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// fitByRequests is how many workers the scheduler can still place.
func fitByRequests(nodes []nodeState, w *workerSpec) int {
	total := 0
	for i := range nodes {
		total += capacity.FitNode(nodes[i].capacityNode(w, false), w.req, capacity.Constraints{}, capacity.Resources{})
	}
	return total
}
