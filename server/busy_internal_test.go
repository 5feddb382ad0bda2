package server

import (
	"fmt"
	"testing"

	"github.com/headroom-autoscaler/headroom/queue"
)

func TestMapBusy(t *testing.T) {
	pod := func(name, ip string) WorkerPod { return WorkerPod{Name: name, IP: ip, Running: true, Ready: true} }
	cons := func(host string, port, ch int, unacked int64) queue.Consumer {
		return queue.Consumer{PeerHost: host, PeerPort: port, Channel: ch, Unacked: unacked}
	}
	six := []WorkerPod{pod("w-a", "10.0.0.1"), pod("w-b", "10.0.0.2"), pod("w-c", "10.0.0.3"), pod("w-d", "10.0.0.4"), pod("w-e", "10.0.0.5"), pod("w-f", "10.0.0.6")}
	for _, tc := range []struct {
		name      string
		pods      []WorkerPod
		kind      string
		consumers []queue.Consumer
		wantKnown bool
		wantBusy  int32
		wantIdle  int32
		wantFloor int32
		wantHeld  map[string]int64
	}{
		{name: "three of six busy", pods: six, kind: "Deployment",
			consumers: []queue.Consumer{cons("10.0.0.1", 1, 1, 1), cons("10.0.0.2", 1, 1, 0), cons("10.0.0.4", 1, 1, 2), cons("10.0.0.6", 1, 1, 1)},
			wantKnown: true, wantBusy: 3, wantIdle: 3, wantFloor: 3, wantHeld: map[string]int64{"w-a": 1, "w-d": 2, "w-f": 1}},
		{name: "consumers sharing a channel count it once", pods: six, kind: "Deployment",
			consumers: []queue.Consumer{cons("10.0.0.1", 1, 1, 2), cons("10.0.0.1", 1, 1, 2), cons("10.0.0.1", 1, 2, 1)},
			wantKnown: true, wantBusy: 1, wantIdle: 5, wantFloor: 1, wantHeld: map[string]int64{"w-a": 3}},
		{name: "no consumers: all idle", pods: six, kind: "Deployment", wantKnown: true, wantIdle: 6, wantHeld: map[string]int64{}},
		{name: "host network: shared IP is ambiguous", kind: "Deployment",
			pods:      []WorkerPod{pod("w-a", "192.168.1.10"), pod("w-b", "192.168.1.10")},
			consumers: []queue.Consumer{cons("192.168.1.10", 1, 1, 1)}},
		{name: "proxy or NAT: peer is no pod", pods: six, kind: "Deployment",
			consumers: []queue.Consumer{cons("10.0.0.1", 1, 1, 1), cons("172.20.0.9", 1, 1, 0)}},
		{name: "statefulset holds up to the highest busy ordinal", kind: "StatefulSet",
			pods:      []WorkerPod{pod("s-0", "10.0.1.0"), pod("s-1", "10.0.1.1"), pod("s-2", "10.0.1.2"), pod("s-3", "10.0.1.3"), pod("s-4", "10.0.1.4")},
			consumers: []queue.Consumer{cons("10.0.1.3", 1, 1, 1)},
			wantKnown: true, wantBusy: 1, wantIdle: 4, wantFloor: 4, wantHeld: map[string]int64{"s-3": 1}},
		{name: "pods not running are neither busy nor idle", kind: "Deployment",
			pods:      []WorkerPod{pod("w-a", "10.0.0.1"), {Name: "w-b", IP: "10.0.0.2"}},
			wantKnown: true, wantIdle: 1, wantHeld: map[string]int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mapBusy(tc.pods, tc.kind, tc.consumers)
			if got.known != tc.wantKnown {
				t.Fatalf("known = %v (%s), want %v", got.known, got.why, tc.wantKnown)
			}
			if !got.known {
				if got.why == "" {
					t.Error("unknown without a reason")
				}
				return
			}
			if got.busy != tc.wantBusy || got.idle != tc.wantIdle || got.floor != tc.wantFloor {
				t.Errorf("busy, idle, floor = %d, %d, %d, want %d, %d, %d", got.busy, got.idle, got.floor, tc.wantBusy, tc.wantIdle, tc.wantFloor)
			}
			if len(got.held) != len(tc.wantHeld) {
				t.Errorf("held = %v, want %v", got.held, tc.wantHeld)
			}
			for k, v := range tc.wantHeld {
				if got.held[k] != v {
					t.Errorf("held[%s] = %d, want %d", k, got.held[k], v)
				}
			}
		})
	}
}

func TestWantedCosts(t *testing.T) {
	three := int32(3)
	pods := []WorkerPod{
		{Name: "busy", Running: true, IP: "10.0.0.1"},
		{Name: "stale", Running: true, IP: "10.0.0.2", DeletionCost: &three},
		{Name: "idle", Running: true, IP: "10.0.0.3"},
	}
	v := busyView{known: true, held: map[string]int64{"busy": 2}}
	for _, tc := range []struct {
		name string
		kind string
		v    busyView
		want map[string]int32 // pod → wanted cost; absent: no annotation
	}{
		{name: "busy pods cost the work they hold, stale costs go", kind: "Deployment", v: v, want: map[string]int32{"busy": 2}},
		{name: "unknown busy set: every cost goes", kind: "Deployment", v: busyView{}, want: map[string]int32{}},
		{name: "statefulsets get no costs", kind: "StatefulSet", v: v, want: map[string]int32{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wantedCosts("ns", Workload{Kind: tc.kind, Pods: pods}, tc.v)
			if len(got) != len(pods) {
				t.Fatalf("%d costs, want %d", len(got), len(pods))
			}
			for _, pc := range got {
				w, ok := tc.want[pc.key.pod]
				switch {
				case ok && (pc.want == nil || *pc.want != w):
					t.Errorf("%s: want cost %d, got %v", pc.key.pod, w, pc.want)
				case !ok && pc.want != nil:
					t.Errorf("%s: want no cost, got %d", pc.key.pod, *pc.want)
				}
			}
		})
	}
}

func TestCostPatcherSkipsRightCosts(t *testing.T) {
	one, two := int32(1), int32(2)
	c := newCostPatcher(nil, 0, 0, nil, nil)
	c.set([]podCost{
		{key: costKey{"ns", "right"}, want: &one, has: &one},
		{key: costKey{"ns", "wrong"}, want: &two, has: &one},
		{key: costKey{"ns", "stale"}, has: &one},
		{key: costKey{"ns", "none"}},
	})
	var got []string
	for {
		pc, ok := c.next()
		if !ok {
			break
		}
		got = append(got, pc.key.pod)
	}
	if want := []string{"wrong", "stale"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("patched %v, want %v (busiest first)", got, want)
	}
}

// BenchmarkMapBusy maps 1,000 consumers to 1,000 pods, a large target's busy view per pass.
func BenchmarkMapBusy(b *testing.B) {
	pods := make([]WorkerPod, 1000)
	cons := make([]queue.Consumer, 1000)
	for i := range pods {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		pods[i] = WorkerPod{Name: fmt.Sprintf("w-%d", i), IP: ip, Running: true, Ready: true}
		cons[i] = queue.Consumer{PeerHost: ip, PeerPort: 40000, Channel: 1, Unacked: int64(i % 2)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if v := mapBusy(pods, "Deployment", cons); v.busy != 500 {
			b.Fatalf("busy = %d, want 500", v.busy)
		}
	}
}

func TestRemovable(t *testing.T) {
	cost := func(c int32) *int32 { return &c }
	pod := func(name string, c *int32) WorkerPod {
		return WorkerPod{Name: name, IP: "10.0.0." + name, Running: true, Ready: true, DeletionCost: c}
	}
	held := func(names ...string) busyView {
		v := busyView{known: true, held: map[string]int64{}}
		for _, n := range names {
			v.held[n] = 1
		}
		return v
	}
	for _, tc := range []struct {
		name string
		pods []WorkerPod
		view busyView
		want int32
	}{
		{name: "busy pods protected: every idle pod goes first",
			pods: []WorkerPod{pod("1", cost(1)), pod("2", nil), pod("3", cost(2)), pod("4", nil)},
			view: held("1", "3"), want: 2},
		{name: "a busy pod's cost not written yet: no idle pod is sure to go first",
			pods: []WorkerPod{pod("1", cost(1)), pod("2", nil), pod("3", nil), pod("4", nil)},
			view: held("1", "3"), want: 0},
		{name: "a stale cost on a now idle pod keeps it from the count",
			pods: []WorkerPod{pod("1", cost(1)), pod("2", cost(1)), pod("3", nil)},
			view: held("1"), want: 1},
		{name: "pods not running go first whatever their cost",
			pods: []WorkerPod{pod("1", nil), {Name: "p", Running: false}},
			view: held("1"), want: 1},
		{name: "nobody busy: every pod may go",
			pods: []WorkerPod{pod("1", cost(5)), pod("2", nil)},
			view: held(), want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := removable(tc.pods, tc.view); got != tc.want {
				t.Errorf("removable = %d, want %d", got, tc.want)
			}
		})
	}
}
