package server

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/headroom-autoscaler/headroom/queue"
)

// ConsumerReader lists a queue's consumers with the messages each holds (the management API's
// per-consumer view). *queue.Reader implements it; a QueueReader without it leaves busy
// workers unknown.
type ConsumerReader interface {
	Consumers(ctx context.Context, sel queue.Selector) ([]queue.Consumer, error)
}

var _ ConsumerReader = (*queue.Reader)(nil)

// DeletionCostAnnotation is the annotation the ReplicaSet controller reads to choose which
// pods to delete first on a scale-down: lower costs go first.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// busyView is which pods of a target hold messages, as mapped from the broker's consumers.
type busyView struct {
	// known is false when the mapping is ambiguous or impossible: busy workers are then
	// unknown, the decision cannot tell them from idle ones and no deletion cost is set.
	known bool
	// why says why known is false.
	why string
	// skipped: not read, because no scale-down is pending (the pods' deletion costs are
	// then left as they are). pending: asked for now, read from the next broker refresh on.
	skipped, pending bool
	// held maps a pod name to the messages its consumers hold (only pods holding some).
	held map[string]int64
	// busy is the number of busy pods; idle the Running pods holding nothing.
	busy, idle int32
	// floor is what the decision must not go below: busy for a Deployment; for a StatefulSet,
	// which always removes the highest ordinals, the highest busy ordinal + 1.
	floor int32
}

// mapBusy maps each consumer of a target's queue to the target's pod whose IP is the
// consumer's peer host, and counts the pods that hold unacknowledged messages.
//
// The mapping is by IP only, so it is refused (known=false) when:
//   - two of the target's pods share an IP (host networking: every pod of a node has the
//     node's IP, so a consumer cannot be told apart);
//   - a consumer's peer host is none of the target's pods' IPs (a proxy, a NAT, a sidecar
//     such as a service mesh that terminates the connection elsewhere, or another
//     workload consuming the same queue): its messages cannot be attributed.
//
// RabbitMQ counts unacknowledged messages per channel: consumers sharing a channel each
// report the channel's total, so channels are counted once.
func mapBusy(pods []WorkerPod, kind string, consumers []queue.Consumer) busyView {
	byIP := make(map[string]string, len(pods))
	for _, p := range pods {
		if p.IP == "" || !p.Running {
			continue
		}
		if other, dup := byIP[p.IP]; dup {
			return busyView{why: "pods " + other + " and " + p.Name + " share IP " + p.IP + " (host network?)"}
		}
		byIP[p.IP] = p.Name
	}
	type channel struct {
		host      string
		port, num int
	}
	seen := map[channel]bool{}
	v := busyView{known: true, held: map[string]int64{}}
	for _, c := range consumers {
		name, ok := byIP[c.PeerHost]
		if !ok {
			return busyView{why: "consumer from " + c.PeerHost + " is not a pod of the target (proxy or NAT?)"}
		}
		ch := channel{c.PeerHost, c.PeerPort, c.Channel}
		if seen[ch] {
			continue
		}
		seen[ch] = true
		if c.Unacked > 0 {
			v.held[name] += c.Unacked
		}
	}
	ordinalFloor := int32(0)
	for _, p := range pods {
		if !p.Running || p.IP == "" {
			continue
		}
		if v.held[p.Name] > 0 {
			v.busy++
			if kind == "StatefulSet" {
				if o, ok := ordinal(p.Name); ok && o+1 > ordinalFloor {
					ordinalFloor = o + 1
				}
			}
		} else {
			v.idle++
		}
	}
	v.floor = max(v.busy, ordinalFloor)
	return v
}

// ordinal is a StatefulSet pod's ordinal: the number after its name's last '-'.
func ordinal(name string) (int32, bool) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || n < 0 || n >= math.MaxInt32 {
		return 0, false
	}
	return int32(n), true
}

// deletionCost is the cost a pod holding held messages gets: idle pods 0 (no annotation, the
// ReplicaSet controller's default), busy pods the number of messages they hold, so that among
// busy pods the ones holding less work go first.
func deletionCost(held int64) int32 {
	return int32(min(held, math.MaxInt32))
}

// removable is how many of a Deployment's pods the ReplicaSet controller would delete before
// any busy one, judged from the deletion costs the pods carry now (in the cache), not the
// ones being written: pods not running (the controller deletes unscheduled, pending and
// not-ready pods first), then idle pods whose cost is below every busy pod's. The decision
// scales down by no more than this, so a scale-down never races the patch that protects a
// busy worker: it waits for the patch to reach the cache, or removes fewer pods meanwhile.
func removable(pods []WorkerPod, v busyView) int32 {
	minBusy := int64(math.MaxInt64)
	for _, p := range pods {
		if p.Running && v.held[p.Name] > 0 {
			minBusy = min(minBusy, costOf(p))
		}
	}
	var n int32
	for _, p := range pods {
		switch {
		case !p.Running || p.IP == "":
			n++
		case v.held[p.Name] > 0:
		case costOf(p) < minBusy:
			n++
		}
	}
	return n
}

// costOf is the deletion cost the ReplicaSet controller sees on a pod: unset is 0.
func costOf(p WorkerPod) int64 {
	if p.DeletionCost == nil {
		return 0
	}
	return int64(*p.DeletionCost)
}
