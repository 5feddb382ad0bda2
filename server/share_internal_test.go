package server

import (
	"fmt"
	"slices"
	"testing"

	"github.com/headroom-autoscaler/headroom/scaler"
)

// shareFor runs the planner's sharing arithmetic for claims of (weight, wanted pods, pods that
// fit alone).
func shareFor(ws []float64, want []int64, fit []int32) []int32 {
	claims := make([]scaler.Claim, len(ws))
	for i := range ws {
		claims[i] = scaler.Claim{Key: fmt.Sprint(i), Weight: ws[i], Want: claimUnits(want[i], fit[i])}
	}
	return sharePods(claims, scaler.Share(shareUnits, claims), want, fit, 1)
}

func TestSharePods(t *testing.T) {
	tests := []struct {
		name   string
		weight []float64
		want   []int64
		fit    []int32
		pods   []int32
	}{
		{name: "one free pod, 3:1, goes to the heavier claim", weight: []float64{3, 1}, want: []int64{20, 20}, fit: []int32{1, 1}, pods: []int32{1, 0}},
		{name: "eight free pods, 3:1", weight: []float64{3, 1}, want: []int64{20, 20}, fit: []int32{8, 8}, pods: []int32{6, 2}},
		{name: "seven free pods, 3:1: the remainder is not stranded", weight: []float64{3, 1}, want: []int64{20, 20}, fit: []int32{7, 7}, pods: []int32{5, 2}},
		{name: "five free pods, equal weights", weight: []float64{1, 1}, want: []int64{20, 20}, fit: []int32{5, 5}, pods: []int32{3, 2}},
		{name: "a footprint four times larger costs four times the room", weight: []float64{1, 1}, want: []int64{20, 20}, fit: []int32{8, 2}, pods: []int32{4, 1}},
		{name: "a small claim is served and its rest shared", weight: []float64{1, 1}, want: []int64{1, 20}, fit: []int32{6, 6}, pods: []int32{1, 5}},
		{name: "never more than wanted", weight: []float64{1, 1}, want: []int64{2, 2}, fit: []int32{9, 9}, pods: []int32{2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := shareFor(tc.weight, tc.want, tc.fit); !slices.Equal(got, tc.pods) {
				t.Errorf("pods = %v, want %v", got, tc.pods)
			}
		})
	}
}

// TestSharePodsNeverOverfills checks, over a grid, that the pods handed out never take more
// than the room (Σ pods/fit ≤ 1) and that room is not left while a claim could still use a
// whole pod of it.
func TestSharePodsNeverOverfills(t *testing.T) {
	for fa := int32(1); fa <= 12; fa++ {
		for fb := int32(1); fb <= 12; fb++ {
			for _, w := range [][]float64{{1, 1}, {3, 1}, {1, 5}} {
				for _, want := range [][]int64{{1, 1}, {3, 20}, {20, 20}} {
					fit := []int32{fa, fb}
					pods := shareFor(w, want, fit)
					var used float64
					for i := range pods {
						if pods[i] < 0 || int64(pods[i]) > want[i] || pods[i] > fit[i] {
							t.Fatalf("fit %v weights %v want %v: pods %v out of bounds", fit, w, want, pods)
						}
						used += float64(pods[i]) / float64(fit[i])
					}
					if used > 1+1e-9 {
						t.Fatalf("fit %v weights %v want %v: pods %v take %.3f of the room", fit, w, want, pods, used)
					}
					for i := range pods {
						if int64(pods[i]) < min(want[i], int64(fit[i])) && used+1/float64(fit[i]) <= 1-1e-9 {
							t.Fatalf("fit %v weights %v want %v: pods %v leave room for another pod of claim %d", fit, w, want, pods, i)
						}
					}
				}
			}
		}
	}
}

func TestUnplacedRoom(t *testing.T) {
	placed := func(n int, node string) []WorkerPod {
		ps := make([]WorkerPod, n)
		for i := range ps {
			ps[i] = WorkerPod{Name: fmt.Sprint(i), Node: node}
		}
		return ps
	}
	tests := []struct {
		name string
		ws   []Workload
		want float64
	}{
		{name: "every pod placed", ws: []Workload{{Current: 3, Fit: 6, Pods: placed(3, "n")}}, want: 1},
		// Fit does not see pods that are not bound: 3 of the 6 that fit are already coming.
		{name: "replicas without pods yet take their part", ws: []Workload{{Current: 4, Fit: 6, Pods: placed(1, "n")}}, want: 1 - 3.0/6},
		{name: "pods not bound yet take their part", ws: []Workload{{Current: 2, Fit: 2, Pods: append(placed(1, "n"), WorkerPod{Name: "x"})}}, want: 1 - 1.0/2},
		{name: "two targets' unplaced pods add up", ws: []Workload{
			{Current: 6, Fit: 5, Pods: placed(2, "n")},
			{Current: 2, Fit: 10, Pods: placed(1, "n")},
		}, want: 1 - 4.0/5 - 1.0/10},
		{name: "unplaced pods where nothing more fits take all", ws: []Workload{{Current: 3, Fit: 0, Pods: placed(2, "n")}, {Current: 1, Fit: 9, Pods: placed(1, "n")}}, want: 0},
		{name: "unschedulable pods take nothing", ws: []Workload{{Current: 3, Pending: 2, Fit: 0, Pods: append(placed(1, "n"), placed(2, "")...)}}, want: 1},
		{name: "pods not listed: nothing known", ws: []Workload{{Current: 3, Fit: 6}}, want: 1},
		{name: "never below zero", ws: []Workload{{Current: 9, Fit: 0, Pods: placed(0, "")}}, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unplacedRoom(tc.ws); got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Errorf("unplacedRoom = %v, want %v", got, tc.want)
			}
		})
	}
}
