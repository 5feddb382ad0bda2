package queue

import "context"

// Watch registers sel on its broker without waiting, so that RefreshOnce reads it.
func (r *Reader) Watch(sel Selector) {
	b := r.brokers[sel.Broker]
	b.mu.Lock()
	defer b.mu.Unlock()
	k := ikey{vhost: sel.vhost(), queue: sel.Queue, pattern: sel.Pattern}
	if _, ok := b.interest[k]; !ok {
		b.interest[k] = &interest{since: b.started + 1}
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
