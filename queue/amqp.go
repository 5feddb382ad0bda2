package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// closeGrace bounds how long closing an AMQP connection may wait for the server.
const closeGrace = time.Second

// amqpSource passively declares queues. It keeps one connection per vhost it reads (an AMQP
// connection is bound to one vhost), opens a short-lived channel per inspection (a missing
// queue closes the channel with 404), and redials with exponential backoff after a
// connection drops. Only the broker's refresh goroutine uses it, so it needs no lock.
type amqpSource struct {
	name       string
	url        string
	user, pwd  string
	tls        *tls.Config
	timeout    time.Duration
	refresh    time.Duration
	maxBackoff time.Duration
	conns      map[string]*amqpConn
	reqs       atomic.Int64
}

type amqpConn struct {
	conn    *amqp.Connection
	backoff time.Duration
	next    time.Time // no dial before this
	lastErr error
}

func newAMQPSource(c BrokerConfig, o Options) (*amqpSource, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	user, pwd := c.credentials()
	return &amqpSource{
		name: c.Name, url: c.baseURL(), user: user, pwd: pwd, tls: tlsCfg,
		timeout: o.Timeout, refresh: o.Refresh, maxBackoff: o.MaxBackoff,
		conns: map[string]*amqpConn{},
	}, nil
}

func (s *amqpSource) requests() int64 { return s.reqs.Load() }

func (s *amqpSource) close() {
	for _, c := range s.conns {
		if c.conn != nil {
			_ = c.conn.CloseDeadline(time.Now().Add(closeGrace))
		}
	}
}

func (s *amqpSource) fetch(ctx context.Context, p plan) (*result, error) {
	res := newResult()
	for _, q := range p.queues {
		st, err := s.inspect(ctx, q)
		switch {
		case errors.Is(err, ErrNotFound):
			res.missing[q] = true
		case err != nil:
			return nil, err
		default:
			res.queues[q] = st
		}
	}
	return res, nil
}

// connection returns a live connection to vhost, dialling when the last one dropped, unless
// the previous dial failed less than a backoff ago.
func (s *amqpSource) connection(vhost string) (*amqp.Connection, error) {
	c := s.conns[vhost]
	if c == nil {
		c = &amqpConn{}
		s.conns[vhost] = c
	}
	if c.conn != nil && !c.conn.IsClosed() {
		return c.conn, nil
	}
	now := time.Now()
	if now.Before(c.next) {
		return nil, fmt.Errorf("connect to vhost %q: waiting %v before redialling: %w", vhost, c.next.Sub(now).Round(time.Millisecond), c.lastErr)
	}
	cfg := amqp.Config{
		Vhost:      vhost,
		Dial:       amqp.DefaultDial(s.timeout),
		Properties: amqp.Table{"connection_name": "headroom queue reader"},
	}
	if s.user != "" || s.pwd != "" {
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: s.user, Password: s.pwd}}
	}
	if s.tls != nil {
		cfg.TLSClientConfig = s.tls.Clone() // the library sets ServerName on it
	}
	s.reqs.Add(1)
	conn, err := amqp.DialConfig(s.url, cfg)
	if err != nil {
		c.conn = nil
		c.backoff = min(max(2*c.backoff, s.refresh), max(s.maxBackoff, s.refresh))
		c.next = now.Add(c.backoff)
		c.lastErr = fmt.Errorf("connect to vhost %q: %w", vhost, err)
		return nil, c.lastErr
	}
	c.conn, c.backoff, c.next, c.lastErr = conn, 0, time.Time{}, nil
	return conn, nil
}

// inspect passively declares one queue on a fresh channel.
func (s *amqpSource) inspect(ctx context.Context, q qkey) (queueStat, error) {
	conn, err := s.connection(q.vhost)
	if err != nil {
		return queueStat{}, err
	}
	abort := func() { _ = conn.CloseDeadline(time.Now().Add(closeGrace)) }
	s.reqs.Add(1)
	ch, err := callWithDeadline(ctx, s.timeout, abort, conn.Channel)
	if err != nil {
		return queueStat{}, fmt.Errorf("open channel: %w", err)
	}
	s.reqs.Add(1)
	aq, err := callWithDeadline(ctx, s.timeout, abort, func() (amqp.Queue, error) {
		return ch.QueueDeclarePassive(q.name, false, false, false, false, nil)
	})
	at := time.Now()
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		// The server closed the channel; the connection stays usable.
		return queueStat{}, fmt.Errorf("vhost %q queue %q: %w", q.vhost, q.name, ErrNotFound)
	}
	if err != nil {
		return queueStat{}, fmt.Errorf("inspect vhost %q queue %q: %w", q.vhost, q.name, err)
	}
	if _, err := callWithDeadline(ctx, s.timeout, abort, func() (struct{}, error) { return struct{}{}, ch.Close() }); err != nil {
		return queueStat{}, fmt.Errorf("close channel: %w", err)
	}
	return queueStat{ready: int64(aq.Messages), consumers: int64(aq.Consumers), at: at}, nil
}

// callWithDeadline runs fn, a call that takes no context, and gives up when ctx ends or
// timeout passes: abort (closing the connection) then makes fn return, and callWithDeadline
// waits for it, so no goroutine outlives the call.
func callWithDeadline[T any](ctx context.Context, timeout time.Duration, abort func(), fn func() (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type out struct {
		v   T
		err error
	}
	done := make(chan out, 1)
	go func() {
		v, err := fn()
		done <- out{v, err}
	}()
	select {
	case o := <-done:
		return o.v, o.err
	case <-ctx.Done():
		abort()
		<-done
		var zero T
		return zero, fmt.Errorf("no answer from the broker: %w", context.Cause(ctx))
	}
}
