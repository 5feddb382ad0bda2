package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/headroom-autoscaler/headroom/capacity"
)

// Capacity adapts a *capacity.Cluster to ClusterReader, Syncer and NodeLister.
type Capacity struct {
	Cluster *capacity.Cluster
	// Addresses are the scalerAddress values by which ScaledObjects name this scaler. When
	// empty, every external or external-push trigger whose metadata names a queue (queue or
	// queuePattern) is taken as pointing at this scaler.
	Addresses []string
	// TargetTimeout bounds a read of a target other than a Deployment or StatefulSet (through
	// its /scale subresource). Default 5s.
	TargetTimeout time.Duration

	// The converted list and the cluster's list it was made from: the cluster hands out the
	// same list until a ScaledObject changes, and so does ScaledObjects.
	mu       sync.Mutex
	listFrom []capacity.ScaledObject
	list     []ScaledObject
}

var (
	_ ClusterReader = (*Capacity)(nil)
	_ Syncer        = (*Capacity)(nil)
	_ NodeLister    = (*Capacity)(nil)
	_ Versioned     = (*Capacity)(nil)
)

// Version changes whenever the cluster caches change.
func (c *Capacity) Version() uint64 { return c.Cluster.Version() }

// Synced reports whether the cluster caches have synced.
func (c *Capacity) Synced() bool { return c.Cluster.Synced() }

// ScaledObjects lists the ScaledObjects with a trigger pointing at this scaler.
func (c *Capacity) ScaledObjects() ([]ScaledObject, error) {
	if !c.Cluster.Synced() {
		return nil, ErrNotSynced
	}
	from := c.Cluster.ScaledObjects()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(from) > 0 && len(from) == len(c.listFrom) && &from[0] == &c.listFrom[0] {
		return c.list, nil
	}
	var out []ScaledObject
	for _, so := range from {
		if s, ok := c.convert(so); ok {
			out = append(out, s)
		}
	}
	c.listFrom, c.list = from, out
	return out, nil
}

// ScaledObject returns one ScaledObject that points at this scaler.
func (c *Capacity) ScaledObject(namespace, name string) (ScaledObject, error) {
	if !c.Cluster.Synced() {
		return ScaledObject{}, ErrNotSynced
	}
	so, ok := c.Cluster.LookupScaledObject(namespace, name)
	if !ok {
		return ScaledObject{}, ErrNotFound
	}
	s, _ := c.convert(so)
	return s, nil
}

func (c *Capacity) convert(so capacity.ScaledObject) (ScaledObject, bool) {
	out := ScaledObject{
		Namespace: so.Namespace, Name: so.Name, UID: so.UID,
		Target:      TargetRef{Namespace: so.Target.Namespace, Kind: so.Target.Kind, Name: so.Target.Name, APIVersion: so.Target.APIVersion},
		MaxReplicas: so.MaxReplicas,
	}
	idx := servedTriggers(so, c.Addresses)
	for _, i := range idx {
		out.Triggers = append(out.Triggers, so.Triggers[i].Metadata)
	}
	if len(idx) > 0 {
		out.Warnings = HPAFindings(so, idx)
	}
	return out, len(out.Triggers) > 0
}

// Workload reads the target's state and how many more workers of fp fit.
func (c *Capacity) Workload(ref TargetRef, fp Footprint, reserve Resources) (Workload, error) {
	if !c.Cluster.Synced() {
		return Workload{}, ErrNotSynced
	}
	tref := capacity.TargetRef{Namespace: ref.Namespace, Kind: ref.Kind, Name: ref.Name, APIVersion: ref.APIVersion}
	ctx := context.Background()
	if !tref.Cached() { // a request to the API server: bounded
		timeout := c.TargetTimeout
		if timeout == 0 {
			timeout = 5 * time.Second
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ts, err := c.Cluster.Target(ctx, tref)
	if err != nil {
		if errors.Is(err, capacity.ErrNotFound) {
			return Workload{}, errors.Join(ErrNotFound, err)
		}
		return Workload{}, err
	}
	var f capacity.Footprint
	switch fp.Mode {
	case FootprintLimits:
		f = ts.Limits
	case FootprintExplicit:
		f = capacity.Footprint{MilliCPU: fp.Explicit.MilliCPU, Memory: fp.Explicit.Memory}
	default:
		f = ts.Footprint
	}
	res := capacity.Resources{MilliCPU: reserve.MilliCPU, Memory: reserve.Memory}
	var fit int
	if grow := footprintGrowth(ts.Footprint, f); grow != (capacity.Resources{}) {
		fit = capacity.Fit(ownPodsAtFootprint(c.Cluster.Nodes(), ts.Pods, grow), f, ts.Constraints, res)
	} else {
		fit = c.Cluster.Fit(f, ts.Constraints, res)
	}
	w := Workload{
		Kind:    ref.Kind,
		Current: ts.Spec, Ready: ts.Ready, Pending: ts.PendingUnschedulable,
		Fit:       int32(min(fit, 1<<30)),
		Footprint: Resources{MilliCPU: f.MilliCPU, Memory: f.Memory},
		Pods:      make([]WorkerPod, 0, len(ts.Pods)),
	}
	for _, p := range ts.Pods {
		w.Pods = append(w.Pods, WorkerPod{
			Name: p.Name, IP: p.IP, Node: p.Node, Ready: p.Ready,
			Running: p.Phase == "Running", DeletionCost: p.DeletionCost,
			Created: p.Created, Terminating: p.Terminating,
			Finished: p.Phase == "Succeeded" || p.Phase == "Failed",
		})
	}
	return w, nil
}

// footprintGrowth is how much more than its requests one of the target's pods takes when it
// is counted at the footprint: (footprint − requests)⁺ per resource. Zero when the footprint
// is the requests.
func footprintGrowth(requests, fp capacity.Footprint) capacity.Resources {
	return capacity.Resources{
		MilliCPU: max(fp.MilliCPU-requests.MilliCPU, 0),
		Memory:   max(fp.Memory-requests.Memory, 0),
	}
}

// ownPodsAtFootprint counts the target's own pods at max(requests, footprint): on each node it
// adds grow × the target's pods bound there (and not finished) to the node's requested. With
// a footprint larger than the requests (limits, or an explicit size for workers that use more
// once busy), counting the running workers at their requests would hand the room they take
// once busy to new pods, and overcommit the nodes.
func ownPodsAtFootprint(nodes []capacity.Node, pods []capacity.Pod, grow capacity.Resources) []capacity.Node {
	perNode := map[string]int64{}
	for _, p := range pods {
		if p.Node != "" && p.Phase != "Succeeded" && p.Phase != "Failed" {
			perNode[p.Node]++
		}
	}
	for i := range nodes {
		if k := perNode[nodes[i].Name]; k > 0 {
			nodes[i].Requested.MilliCPU += k * grow.MilliCPU
			nodes[i].Requested.Memory += k * grow.Memory
		}
	}
	return nodes
}

// NodesFree lists every node's free room (no reserve).
func (c *Capacity) NodesFree() []NodeFree {
	nodes := c.Cluster.Nodes()
	out := make([]NodeFree, 0, len(nodes))
	for _, n := range nodes {
		f := n.Free(capacity.Resources{})
		out = append(out, NodeFree{Node: n.Name, MilliCPU: f.MilliCPU, Memory: f.Memory, Pods: f.Pods})
	}
	return out
}

// servedTriggers returns the indices of so's triggers that point at this scaler: with
// addresses, the external triggers whose scalerAddress is one of them; without, every external
// or external-push trigger whose metadata names a queue.
func servedTriggers(so capacity.ScaledObject, addresses []string) []int {
	if len(addresses) > 0 {
		return so.TriggersAt(addresses)
	}
	var out []int
	for i, t := range so.Triggers {
		if (t.Type == capacity.TriggerExternal || t.Type == capacity.TriggerExternalPush) &&
			(t.Metadata[KeyQueue] != "" || t.Metadata[KeyQueuePattern] != "") {
			out = append(out, i)
		}
	}
	return out
}
