package e2e

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// echoServer answers each line with its name and the line, until closed.
func echoServer(t *testing.T, name string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write([]byte(name + ":" + sc.Text() + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

func roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimSpace(line)
}

// TestProxyFailsOver checks the Service stand-in: connections spread over the backends, and
// once a backend is gone every new connection reaches the survivor.
func TestProxyFailsOver(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	defer b.Close()
	p, err := StartProxy([]string{a.Addr().String(), b.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		got := roundTrip(t, p.Addr(), "x")
		seen[strings.SplitN(got, ":", 2)[0]] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("backends reached: %v, want both a and b", seen)
	}
	a.Close()
	for i := 0; i < 4; i++ {
		if got := roundTrip(t, p.Addr(), "y"); got != "b:y" {
			t.Errorf("after a died: got %q, want %q", got, "b:y")
		}
	}
}

func TestStartProxyRejectsBadBackends(t *testing.T) {
	tests := []struct {
		name     string
		backends []string
		want     string
	}{
		{name: "none", backends: nil, want: "no backends"},
		{name: "no port", backends: []string{"127.0.0.1"}, want: `backend "127.0.0.1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := StartProxy(tc.backends)
			if err == nil {
				p.Close()
				t.Fatalf("StartProxy(%q) = nil error, want one containing %q", tc.backends, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
