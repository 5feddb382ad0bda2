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
	y := `
name: requeue
drain: 1h
arrivals: {synthetic: {kind: burst, length: 10s, rate: 0, to: 2, at: 0s, width: 1s}}
service: {kind: fixed, mean: 100s}
cluster: {nodes: [{name: n, allocatable: {cpu: "8", memory: 8Gi}}]}
workload: {requests: {cpu: 100m}, minReplicas: 2, maxReplicas: 2}
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
