package simulate

import (
	"slices"
	"testing"
)

// TestVictimOrder checks the ReplicaSet controller's deletion order as modelled.
func TestVictimOrder(t *testing.T) {
	type p struct {
		id         int64
		node       int
		ready      bool
		readySince int64
		created    int64
		cost       int
	}
	tests := []struct {
		name string
		pods []p
		k    int
		want []int64
	}{
		{name: "unassigned before assigned", k: 1, want: []int64{2},
			pods: []p{{id: 1, node: 0, ready: true}, {id: 2, node: -1}}},
		{name: "not ready before ready", k: 1, want: []int64{1},
			pods: []p{{id: 1, node: 0, created: 990}, {id: 2, node: 1, ready: true, readySince: 999, created: 990}}},
		{name: "lower deletion cost first", k: 1, want: []int64{2},
			pods: []p{{id: 1, node: 0, ready: true, readySince: 999, cost: 1}, {id: 2, node: 1, ready: true, readySince: 0, cost: 0}}},
		{name: "doubled-up node first", k: 1, want: []int64{3},
			pods: []p{{id: 1, node: 0, ready: true, readySince: 999}, {id: 2, node: 1, ready: true}, {id: 3, node: 1, ready: true, readySince: 500}}},
		{name: "ready for less time first", k: 2, want: []int64{3, 2},
			pods: []p{{id: 1, node: 0, ready: true, readySince: 0}, {id: 2, node: 1, ready: true, readySince: 900}, {id: 3, node: 2, ready: true, readySince: 990}}},
		{name: "busy workers get no protection without cost", k: 1, want: []int64{2},
			pods: []p{{id: 1, node: 0, ready: true, readySince: 0}, {id: 2, node: 1, ready: true, readySince: 990}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &sim{t: 1000}
			for _, q := range tc.pods {
				s.pods = append(s.pods, &pod{id: q.id, node: q.node, ready: q.ready, readySince: q.readySince, created: q.created, cost: q.cost})
			}
			var got []int64
			for _, v := range s.victims(tc.k) {
				got = append(got, v.id)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("victims = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRequeueKeepsOrderAndWait: a killed busy worker's message goes back to the head of the
// queue, keeps its arrival time, and is counted once when it completes.
func TestRequeueKeepsOrderAndWait(t *testing.T) {
	s, m := twoBusyWorkers(t, "0s")
	s.setReplicas(1) // kills one busy worker
	if s.met.busyKilled != 1 || s.ready != 1 || s.q[s.qh].arrival != 0 {
		t.Fatalf("after the kill: busy_killed %d, ready %d, head arrival %d; want 1, 1, 0", s.met.busyKilled, s.ready, s.q[s.qh].arrival)
	}
	s.t++
	for ; s.t < m.horizon; s.t++ {
		s.step()
	}
	// The surviving worker finishes its message at 100 s and then takes the requeued one, whose
	// wait runs from its arrival at 0 to that start at 100 s.
	if s.met.count != 2 || s.met.percentile(100) != 100 || s.met.percentile(50) != 0 {
		t.Errorf("waits: %d recorded, max %v, p50 %v; want 2, 100, 0", s.met.count, s.met.percentile(100), s.met.percentile(50))
	}
}

// TestGracefulTermination: a deleted busy worker stops taking messages, keeps its node's room
// and finishes its message when that ends within the grace period; otherwise it is killed
// when the grace period ends.
func TestGracefulTermination(t *testing.T) {
	for _, tc := range []struct {
		name       string
		grace      string
		wantKilled int64
		wantGoneAt int64 // when the deleted worker leaves its node
	}{
		// Deleted at 50 s; its message ends at 100 s.
		{name: "message ends within the grace period", grace: "60s", wantKilled: 0, wantGoneAt: 100},
		{name: "grace period ends first", grace: "30s", wantKilled: 1, wantGoneAt: 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m := twoBusyWorkers(t, tc.grace)
			s.setReplicas(1)
			if s.bound != 2 || s.readyN != 1 || len(s.draining) != 1 {
				t.Fatalf("after SIGTERM: %d bound, %d ready, %d draining; want 2, 1, 1", s.bound, s.readyN, len(s.draining))
			}
			gone := int64(-1)
			for s.t++; s.t < m.horizon; s.t++ {
				s.step()
				if gone < 0 && s.bound == 1 {
					gone = s.t
				}
			}
			if s.met.busyKilled != tc.wantKilled || gone != tc.wantGoneAt {
				t.Errorf("busy_killed %d, gone at %d s; want %d, %d s", s.met.busyKilled, gone, tc.wantKilled, tc.wantGoneAt)
			}
			if s.met.count != 2 || s.unacked != 0 || s.ready != 0 {
				t.Errorf("%d waits recorded, %d unacked, %d ready; want 2, 0, 0", s.met.count, s.unacked, s.ready)
			}
		})
	}
}

// twoBusyWorkers is a fixed fleet of two workers, each holding one 100 s message at 50 s.
func twoBusyWorkers(t *testing.T, grace string) (*sim, *model) {
	t.Helper()
	y := `
name: requeue
drain: 1h
arrivals: {synthetic: {kind: burst, length: 10s, rate: 0, to: 2, at: 0s, width: 1s}}
service: {kind: fixed, mean: 100s}
cluster: {nodes: [{name: n, allocatable: {cpu: "8", memory: 8Gi}}]}
workload: {requests: {cpu: 100m}, minReplicas: 2, maxReplicas: 2, terminationGracePeriod: ` + grace + `}
run: [fixed]
policies: {fixed: {replicas: 2}}
`
	sc, err := parseScenario([]byte(y), "requeue.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := compile(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSim(m, PolicyFixed)
	s.ctl = static{}
	s.start(2)
	for s.t = 0; s.t < 50; s.t++ {
		s.step()
	}
	if s.busyW != 2 || s.unacked != 2 {
		t.Fatalf("after 50 s: %d busy workers, %d unacked; want 2 and 2", s.busyW, s.unacked)
	}
	return s, m
}
