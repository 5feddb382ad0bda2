package queue

import (
	"context"
	"regexp"
	"time"
)

// Watch registers sel on its broker without waiting, so that RefreshOnce reads it.
func (r *Reader) Watch(sel Selector) {
	b := r.brokers[sel.Broker]
	b.mu.Lock()
	defer b.mu.Unlock()
	k := ikey{vhost: sel.vhost(), queue: sel.Queue, pattern: sel.Pattern, depthsOnly: sel.DepthsOnly}
	if _, ok := b.interest[k]; !ok {
		in := &interest{since: b.started + 1, lastUsed: time.Now()}
		if sel.Pattern != "" {
			in.re = regexp.MustCompile(sel.Pattern)
		}
		b.interest[k] = in
	}
}

// RefreshOnce reads broker name once now, on the caller's goroutine (the Reader must not be
// started), and returns the refresh error.
func (r *Reader) RefreshOnce(ctx context.Context, name string) error {
	b := r.brokers[name]
	b.refresh(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// SetMaxMetricsBody lowers the bound on the Prometheus endpoint's answer and returns a
// function that restores it.
func SetMaxMetricsBody(n int64) (restore func()) {
	old := maxMetricsBodyBytes
	maxMetricsBodyBytes = n
	return func() { maxMetricsBodyBytes = old }
}
