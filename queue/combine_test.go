package queue

import (
	"errors"
	"regexp"
	"testing"
	"time"
)

func TestCombine(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	qs := []queueStat{
		{ready: 2, unacked: 1, consumers: 1, publishRate: 1, deliverRate: 2, ratesKnown: true, at: t0.Add(2 * time.Second)},
		{ready: 5, unacked: 0, consumers: 3, publishRate: 3, deliverRate: 0, ratesKnown: true, at: t0},
		{ready: 0, unacked: 0, consumers: 0, publishRate: 2, deliverRate: 1, ratesKnown: true, at: t0.Add(time.Second)},
	}
	tests := []struct {
		name string
		op   Op
		qs   []queueStat
		want Snapshot
	}{
		{name: "sum", op: OpSum, qs: qs, want: Snapshot{Ready: 7, Unacked: 1, Consumers: 4, PublishRate: 6, DeliverRate: 3, RatesKnown: true}},
		{name: "max", op: OpMax, qs: qs, want: Snapshot{Ready: 5, Unacked: 1, Consumers: 3, PublishRate: 3, DeliverRate: 2, RatesKnown: true}},
		{name: "avg rounds counts up", op: OpAvg, qs: qs, want: Snapshot{Ready: 3, Unacked: 1, Consumers: 2, PublishRate: 2, DeliverRate: 1, RatesKnown: true}},
		{name: "one queue without rates hides rates", op: OpSum, qs: append([]queueStat{{ready: 1, at: t0}}, qs...),
			want: Snapshot{Ready: 8, Unacked: 1, Consumers: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := combine(tc.op, tc.qs, true, t0.Add(time.Minute))
			tc.want.Queues, tc.want.InFlightVisible, tc.want.At, tc.want.Fetched = len(tc.qs), true, t0, t0.Add(time.Minute)
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzCombine: whatever the queues, sum ≥ max ≥ avg ≥ 0, and avg is non-zero whenever any
// queue has work (so an average never hides work).
func FuzzCombine(f *testing.F) {
	f.Add(int64(1), int64(0), int64(3), int64(2))
	f.Fuzz(func(t *testing.T, a, b, c, d int64) {
		var qs []queueStat
		for _, v := range []int64{a, b, c, d} {
			if v < 0 || v > 1<<40 {
				t.Skip()
			}
			qs = append(qs, queueStat{ready: v, unacked: v / 2})
		}
		sum, mx, avg := combine(OpSum, qs, true, time.Time{}), combine(OpMax, qs, true, time.Time{}), combine(OpAvg, qs, true, time.Time{})
		if !(sum.Ready >= mx.Ready && mx.Ready >= avg.Ready && avg.Ready >= 0) {
			t.Errorf("ready: sum %d, max %d, avg %d", sum.Ready, mx.Ready, avg.Ready)
		}
		if (sum.Ready > 0) != (avg.Ready > 0) || (sum.Unacked > 0) != (avg.Unacked > 0) {
			t.Errorf("avg %+v hides work of sum %+v", avg, sum)
		}
	})
}

// TestPendingStats: a queue listed without depths is ErrStatsPending, for an exact name and
// inside a pattern, never an empty queue.
func TestPendingStats(t *testing.T) {
	res := newResult()
	res.listed["/"] = true
	res.queues[qkey{"/", "ok"}] = queueStat{ready: 4}
	res.queues[qkey{"/", "new"}] = queueStat{pending: true}
	b := &broker{mode: ModeManagement}
	tests := []struct {
		name    string
		sel     Selector
		wantErr error
	}{
		{name: "exact with stats", sel: Selector{Broker: "b", Queue: "ok"}},
		{name: "exact pending", sel: Selector{Broker: "b", Queue: "new"}, wantErr: ErrStatsPending},
		{name: "pattern over a pending queue", sel: Selector{Broker: "b", Pattern: "."}, wantErr: ErrStatsPending},
		{name: "missing", sel: Selector{Broker: "b", Queue: "gone"}, wantErr: ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := ikey{vhost: tc.sel.vhost(), queue: tc.sel.Queue, pattern: tc.sel.Pattern}
			in := &interest{}
			if tc.sel.Pattern != "" {
				in.re = regexp.MustCompile(tc.sel.Pattern)
			}
			_, err := b.compute(res, in, k, tc.sel)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}
