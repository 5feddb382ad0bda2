package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy stands in for a Kubernetes Service in front of the scaler's replicas: it accepts TCP
// connections on 127.0.0.1 and forwards each one to the first backend, in round-robin order,
// that accepts a connection. A killed replica refuses connections, so clients that reconnect
// reach a live one, as they would through kube-proxy.
type Proxy struct {
	ln       net.Listener
	backends []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartProxy listens on a free loopback port and forwards to backends (host:port).
func StartProxy(backends []string) (*Proxy, error) {
	if len(backends) == 0 {
		return nil, errors.New("start proxy: no backends")
	}
	for _, b := range backends {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return nil, fmt.Errorf("start proxy: backend %q: %w", b, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	p := &Proxy{ln: ln, backends: backends, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

// track records c so that Close can end it; it reports false once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) forward(client net.Conn) {
	defer p.untrack(client)
	defer client.Close()
	p.mu.Lock()
	start := p.next
	p.next = (p.next + 1) % len(p.backends)
	p.mu.Unlock()
	var backend net.Conn
	for i := range p.backends {
		c, err := net.DialTimeout("tcp", p.backends[(start+i)%len(p.backends)], 2*time.Second)
		if err == nil {
			backend = c
			break
		}
	}
	if backend == nil || !p.track(backend) {
		if backend != nil {
			backend.Close()
		}
		return
	}
	defer p.untrack(backend)
	defer backend.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the other direction can finish, then unblock it if it does not.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	// One side ended: a killed backend or a departed client. End the other side too.
	client.Close()
	backend.Close()
	<-done
}

// Close stops accepting, ends every forwarded connection and waits for them.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
	return err
}
