package scaler

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// visible is a management-API reading: in-flight work visible.
func visible(ready, unacked int64) Queue {
	return Queue{Ready: ready, Unacked: unacked, InFlightVisible: true}
}

func TestDecide(t *testing.T) {
	base := DefaultPolicy() // mpr 1, max 100, step max(1, ceil(cur×0.5)), timeout 2m, idle 60s
	tests := []struct {
		name      string
		policy    Policy
		in        Input
		now       time.Time
		want      int32
		wantLimit Limit
		wantNeed  int32
	}{
		// 1. demand
		{name: "demand counts ready and unacked", policy: base,
			in:   Input{Queue: visible(3, 2), Current: 5, Ready: 5, Fit: 10},
			want: 5, wantLimit: LimitQueue, wantNeed: 5},
		{name: "demand divides by messagesPerReplica, rounding up", policy: Policy{MessagesPerReplica: 4, StepPods: 100},
			in:   Input{Queue: visible(9, 0), Current: 0, Fit: 10},
			want: 3, wantLimit: LimitQueue, wantNeed: 3},
		{name: "unacked excluded from demand on request", policy: Policy{ExcludeUnacked: true, StepPods: 100},
			in:   Input{Queue: visible(2, 6), Current: 0, Fit: 10},
			want: 2, wantLimit: LimitQueue, wantNeed: 2},
		{name: "rates raise demand to keep up with arrivals", policy: Policy{ServiceTime: 10 * time.Second, StepPods: 100},
			in:   Input{Queue: Queue{Ready: 2, InFlightVisible: true, RatesKnown: true, PublishRate: 1.5}, Current: 0, Fit: 100},
			want: 15, wantLimit: LimitQueue, wantNeed: 15},
		{name: "rates unknown: depth only", policy: Policy{ServiceTime: 10 * time.Second, StepPods: 100},
			in:   Input{Queue: Queue{Ready: 2, InFlightVisible: true, PublishRate: 1.5}, Current: 0, Fit: 100},
			want: 2, wantLimit: LimitQueue, wantNeed: 2},

		// 2. scale to zero
		{name: "empty visible queue scales to zero", policy: base,
			in:   Input{Queue: visible(0, 0), Current: 4, Ready: 4, Fit: 10},
			want: 0, wantLimit: LimitQueue},
		{name: "unacked work alone keeps a worker even when excluded from demand", policy: Policy{ExcludeUnacked: true},
			in:   Input{Queue: visible(0, 1), Current: 3, Ready: 3, Fit: 10},
			want: 1, wantLimit: LimitQueue, wantNeed: 1},
		{name: "invisible in-flight: empty queue held until idleAfter", policy: base,
			in:  Input{Queue: Queue{EmptySince: t0.Add(-30 * time.Second)}, Current: 4, Ready: 4},
			now: t0, want: 4, wantLimit: LimitIdle},
		{name: "invisible in-flight: empty since unknown is held", policy: base,
			in:  Input{Queue: Queue{}, Current: 4, Ready: 4},
			now: t0, want: 4, wantLimit: LimitIdle},
		{name: "invisible in-flight: zero after idleAfter", policy: base,
			in:  Input{Queue: Queue{EmptySince: t0.Add(-60 * time.Second)}, Current: 4, Ready: 4},
			now: t0, want: 0, wantLimit: LimitQueue},
		{name: "invisible in-flight: no scale-down while messages wait", policy: base,
			in:  Input{Queue: Queue{Ready: 1}, Current: 4, Ready: 4},
			now: t0, want: 4, wantLimit: LimitIdle, wantNeed: 1},
		{name: "failed read holds the current count", policy: base,
			in:   Input{Failed: true, Current: 7, Ready: 7, Fit: 0},
			want: 7, wantLimit: LimitError},
		{name: "failed read at zero starts one worker when one fits", policy: base,
			in:   Input{Failed: true, Current: 0, Fit: 3},
			want: 1, wantLimit: LimitError},
		{name: "failed read never exceeds max", policy: Policy{MaxReplicas: 3},
			in:   Input{Failed: true, Current: 5, Fit: 3},
			want: 3, wantLimit: LimitError},

		// 3. progressive step-up
		{name: "from zero: one step of stepPods", policy: base,
			in:   Input{Queue: visible(50, 0), Current: 0, Fit: 100},
			want: 1, wantLimit: LimitStep, wantNeed: 50},
		{name: "step is the larger of stepPods and ceil(current × stepPercent)", policy: Policy{StepPods: 2, StepPercent: 0.5},
			in:   Input{Queue: visible(50, 0), Current: 5, Ready: 5, Fit: 100},
			want: 8, wantLimit: LimitStep, wantNeed: 50},
		{name: "stepPods wins for small counts", policy: Policy{StepPods: 4, StepPercent: 0.5},
			in:   Input{Queue: visible(50, 0), Current: 2, Ready: 2, Fit: 100},
			want: 6, wantLimit: LimitStep, wantNeed: 50},
		{name: "next step waits for the previous step to be Ready", policy: base,
			in:  Input{Queue: visible(50, 0), Current: 6, Ready: 4, Fit: 100, LastScaleUp: t0.Add(-30 * time.Second)},
			now: t0, want: 6, wantLimit: LimitStep, wantNeed: 50},
		{name: "next step taken after stepTimeout even if not Ready", policy: base,
			in:  Input{Queue: visible(50, 0), Current: 6, Ready: 4, Fit: 100, LastScaleUp: t0.Add(-2 * time.Minute)},
			now: t0, want: 9, wantLimit: LimitStep, wantNeed: 50},
		{name: "step bounded by need is the queue", policy: base,
			in:   Input{Queue: visible(7, 0), Current: 6, Ready: 6, Fit: 100},
			want: 7, wantLimit: LimitQueue, wantNeed: 7},
		{name: "pending-unschedulable pods stop stepping", policy: base,
			in:   Input{Queue: visible(50, 0), Current: 6, Ready: 5, Pending: 1, Fit: 100},
			want: 6, wantLimit: LimitPending, wantNeed: 50},

		// 4. limits
		{name: "maxReplicas caps demand", policy: Policy{MaxReplicas: 10, StepPods: 100},
			in:   Input{Queue: visible(50, 0), Current: 4, Ready: 4, Fit: 100},
			want: 10, wantLimit: LimitMax, wantNeed: 50},
		{name: "at max stays at max", policy: Policy{MaxReplicas: 10},
			in:   Input{Queue: visible(50, 0), Current: 10, Ready: 10, Fit: 100},
			want: 10, wantLimit: LimitMax, wantNeed: 50},
		{name: "above max (max lowered) comes down to max", policy: Policy{MaxReplicas: 10},
			in:   Input{Queue: visible(50, 0), Current: 12, Ready: 12, Fit: 100},
			want: 10, wantLimit: LimitMax, wantNeed: 50},
		{name: "no more new pods than fit", policy: Policy{StepPods: 100},
			in:   Input{Queue: visible(50, 0), Current: 4, Ready: 4, Fit: 3},
			want: 7, wantLimit: LimitCapacity, wantNeed: 50},
		{name: "nothing fits: hold", policy: Policy{StepPods: 100},
			in:   Input{Queue: visible(50, 0), Current: 4, Ready: 4, Fit: 0},
			want: 4, wantLimit: LimitCapacity, wantNeed: 50},
		{name: "overcommitted cluster (negative fit) adds nothing", policy: Policy{StepPods: 100},
			in:   Input{Queue: visible(50, 0), Current: 4, Ready: 4, Fit: -2},
			want: 4, wantLimit: LimitCapacity, wantNeed: 50},
		{name: "capacity named over step on a tie", policy: Policy{StepPods: 3},
			in:   Input{Queue: visible(50, 0), Current: 4, Ready: 4, Fit: 3},
			want: 7, wantLimit: LimitCapacity, wantNeed: 50},
		{name: "from zero with no room stays at zero", policy: base,
			in:   Input{Queue: visible(5, 0), Current: 0, Fit: 0},
			want: 0, wantLimit: LimitCapacity, wantNeed: 5},

		// 5. scale-down
		{name: "scale-down to need", policy: base,
			in:   Input{Queue: visible(1, 2), Current: 8, Ready: 8, Busy: 2, BusyKnown: true},
			want: 3, wantLimit: LimitQueue, wantNeed: 3},
		{name: "scale-down never below busy workers", policy: Policy{MessagesPerReplica: 10},
			in:   Input{Queue: visible(0, 5), Current: 8, Ready: 8, Busy: 5, BusyKnown: true},
			want: 5, wantLimit: LimitBusy, wantNeed: 1},
		{name: "scale-down below busy when the policy allows it", policy: Policy{MessagesPerReplica: 10, AllowBusyScaleDown: true},
			in:   Input{Queue: visible(0, 5), Current: 8, Ready: 8, Busy: 5, BusyKnown: true},
			want: 1, wantLimit: LimitQueue, wantNeed: 1},
		{name: "scale-down removes no more pods than are marked to go first", policy: base,
			in:   Input{Queue: visible(0, 2), Current: 8, Ready: 8, Busy: 2, BusyKnown: true, Removable: 3, RemovableKnown: true},
			want: 5, wantLimit: LimitBusy, wantNeed: 2},
		{name: "every idle pod marked: scale-down to need", policy: base,
			in:   Input{Queue: visible(0, 2), Current: 8, Ready: 8, Busy: 2, BusyKnown: true, Removable: 6, RemovableKnown: true},
			want: 2, wantLimit: LimitQueue, wantNeed: 2},
		{name: "no pod marked yet: hold", policy: base,
			in:   Input{Queue: visible(0, 2), Current: 8, Ready: 8, Busy: 2, BusyKnown: true, RemovableKnown: true},
			want: 8, wantLimit: LimitBusy, wantNeed: 2},
		{name: "busy workers unknown: keep one per unacked message", policy: Policy{MessagesPerReplica: 10},
			in:   Input{Queue: visible(0, 5), Current: 8, Ready: 8},
			want: 5, wantLimit: LimitBusy, wantNeed: 1},
		{name: "busy workers unknown, policy allows: scale-down to need", policy: Policy{MessagesPerReplica: 10, AllowBusyScaleDown: true},
			in:   Input{Queue: visible(0, 5), Current: 8, Ready: 8},
			want: 1, wantLimit: LimitQueue, wantNeed: 1},
		{name: "busy workers being read: hold", policy: Policy{MessagesPerReplica: 10},
			in:   Input{Queue: visible(0, 5), Current: 8, Ready: 8, BusyPending: true},
			want: 8, wantLimit: LimitBusy, wantNeed: 1},
		{name: "busy workers being read, policy allows: scale-down to need", policy: Policy{MessagesPerReplica: 10, AllowBusyScaleDown: true},
			in:   Input{Queue: visible(0, 5), Current: 8, Ready: 8, BusyPending: true},
			want: 1, wantLimit: LimitQueue, wantNeed: 1},
		{name: "busy workers being read, nothing in flight: to zero", policy: Policy{MessagesPerReplica: 10},
			in:   Input{Queue: visible(0, 0), Current: 8, Ready: 8, BusyPending: true},
			want: 0, wantLimit: LimitQueue},
		{name: "busy floor never raises above current", policy: Policy{MessagesPerReplica: 10},
			in:   Input{Queue: visible(0, 5), Current: 3, Ready: 3, Busy: 5, BusyKnown: true},
			want: 3, wantLimit: LimitBusy, wantNeed: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.policy.Validate(); err != nil {
				t.Fatalf("policy: %v", err)
			}
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			got := Decide(tc.policy, tc.in, now)
			if got.Replicas != tc.want || got.Limit != tc.wantLimit {
				t.Errorf("Decide = %d (%s), want %d (%s); %s", got.Replicas, got.Limit, tc.want, tc.wantLimit, got.Explain())
			}
			if tc.wantNeed != 0 && got.Need != tc.wantNeed {
				t.Errorf("Need = %d, want %d", got.Need, tc.wantNeed)
			}
			if e := got.Explain(); e == "" || strings.Contains(e, "%!") {
				t.Errorf("Explain() = %q", e)
			}
			if e := got.Explain(); tc.in.BusyPending && got.Limit == LimitBusy && !strings.Contains(e, "until the busy workers are read") {
				t.Errorf("Explain() = %q, want it to say the busy workers are being read", e)
			}
		})
	}
}

// TestStepSequence drives Decide the way the cluster would: each step's pods become Ready
// before the next call, and checks the sequence of counts a burst produces.
func TestStepSequence(t *testing.T) {
	p := Policy{StepPods: 1, StepPercent: 0.5, MaxReplicas: 30}
	cur := int32(0)
	var seq []int32
	for i := 0; i < 20; i++ {
		d := Decide(p, Input{Queue: visible(100, 0), Current: cur, Ready: cur, Fit: 25 - cur}, t0)
		if d.Replicas == cur {
			break
		}
		cur = d.Replicas
		seq = append(seq, cur)
	}
	want := []int32{1, 2, 3, 5, 8, 12, 18, 25}
	if len(seq) != len(want) {
		t.Fatalf("sequence %v, want %v", seq, want)
	}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("sequence %v, want %v", seq, want)
		}
	}
	if d := Decide(p, Input{Queue: visible(100, 0), Current: 25, Ready: 25, Fit: 0}, t0); d.Limit != LimitCapacity {
		t.Errorf("at full cluster: limit %s, want capacity", d.Limit)
	}
}

func TestEveryLimitReachable(t *testing.T) {
	// Each factor must be produced by some input of TestDecide; this guards the fixed set.
	seen := map[Limit]bool{}
	p := DefaultPolicy()
	for _, in := range []Input{
		{Queue: visible(0, 0), Current: 1},
		{Queue: visible(500, 0), Current: 100, Ready: 100, Fit: 9},
		{Queue: visible(50, 0), Current: 0, Fit: 9},
		{Queue: visible(50, 0), Current: 4, Ready: 4, Fit: 0},
		{Queue: visible(50, 0), Current: 4, Ready: 3, Pending: 1, Fit: 9},
		{Queue: Queue{}, Current: 2},
		{Queue: visible(0, 3), Current: 5, Busy: 3, BusyKnown: true, Ready: 5},
		{Failed: true, Current: 2},
	} {
		seen[Decide(p, in, t0).Limit] = true
	}
	p.MessagesPerReplica = 10
	seen[Decide(p, Input{Queue: visible(0, 3), Current: 5, Busy: 3, BusyKnown: true}, t0).Limit] = true
	for _, l := range Limits {
		if !seen[l] {
			t.Errorf("limit %q never produced", l)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		wantErr string
	}{
		{name: "zero value is valid", p: Policy{}},
		{name: "defaults are valid", p: DefaultPolicy()},
		{name: "negative messagesPerReplica", p: Policy{MessagesPerReplica: -1}, wantErr: "messagesPerReplica -1"},
		{name: "negative max", p: Policy{MaxReplicas: -3}, wantErr: "maxReplicas -3"},
		{name: "negative stepPods", p: Policy{StepPods: -1}, wantErr: "stepPods -1"},
		{name: "stepPercent too large", p: Policy{StepPercent: 50}, wantErr: "stepPercent 50"},
		{name: "negative stepTimeout", p: Policy{StepTimeout: -time.Second}, wantErr: "stepTimeout -1s"},
		{name: "negative idleAfter", p: Policy{IdleAfter: -time.Second}, wantErr: "idleAfter -1s"},
		{name: "negative serviceTime", p: Policy{ServiceTime: -time.Second}, wantErr: "serviceTime -1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.p
			err := tc.p.Validate()
			if before != tc.p {
				t.Fatal("Validate changed the policy")
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if p.MessagesPerReplica != 1 || p.MaxReplicas != 100 || p.StepPods != 1 || p.StepPercent != 0.5 ||
		p.StepTimeout != 2*time.Minute || p.IdleAfter != time.Minute || p.ExcludeUnacked || p.AllowBusyScaleDown {
		t.Errorf("DefaultPolicy() = %+v", p)
	}
}
