package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// CacheDir is where built binaries and other reusable artefacts live: $HEADROOM_CACHE, else
// $XDG_CACHE_HOME/headroom, else ~/.cache/headroom.
func CacheDir() string {
	if d := os.Getenv("HEADROOM_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "headroom")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "headroom")
	}
	return filepath.Join(os.TempDir(), "headroom-cache")
}

// BinPath is the cached path of a versioned binary: CacheDir()/bin/NAME-VERSION.
func BinPath(name, version string) string {
	return filepath.Join(CacheDir(), "bin", name+"-"+version)
}

// Required reports whether missing real components are a failure rather than a reason to
// skip. The project's test command sets HEADROOM_REAL=1; a plain `go test ./...` on a machine
// without the components skips those tests with a message that says what is missing.
func Required() bool {
	v := os.Getenv("HEADROOM_REAL")
	return v != "" && v != "0"
}

// ErrUnavailable marks a component that is not installed or not built on this machine.
// Callers branch on it to skip rather than fail when Required is false.
var ErrUnavailable = errors.New("component unavailable on this machine")

// startAttempts bounds how often a component's start picks new ports after the component
// found one of them taken.
const startAttempts = 3

// portTaken reports whether a failed start says a port was in use: RabbitMQ's
// "..._already_used" and "eaddrinuse", Go's and etcd's "address already in use".
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "_already_used") || strings.Contains(msg, "eaddrinuse") ||
		strings.Contains(msg, "address already in use")
}

// retryPorts runs start again, on the new ports it picks, while it fails because a port
// FreePort found free was taken before the component bound it (any process's outgoing
// connection, or another test binary's FreePort, may get it in between). start cleans up
// after itself when it fails.
func retryPorts[T any](start func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := start()
		if err == nil || attempt == startAttempts || !portTaken(err) {
			return v, err
		}
	}
}

// freePort is FreePort, replaceable by tests that need a port choice to collide.
var freePort = FreePort

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a child started in its own process group, with output in a log file, stopped by
// its PID.
type Process struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs cmd in its own process group with stdout and stderr appended to logPath.
func Start(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process ID (and its process group ID).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, waits up to grace, then sends SIGKILL. It is safe
// to call more than once.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
	return nil
}

// Kill stops the process group at once with SIGKILL, as a crash would.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n bytes of the process log, for error messages.
func (p *Process) Tail(n int) string { return tail(p.Log, n) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitFor polls check every interval until it returns nil, the context ends or timeout passes.
// The last error from check is part of the returned error. A check error that wraps
// errExited (the process being waited for is gone) ends the wait at once.
func WaitFor(ctx context.Context, what string, timeout, interval time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		if errors.Is(last, errExited) {
			return fmt.Errorf("wait for %s: %w", what, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

// Group stops a set of processes in reverse start order.
type Group struct {
	mu    sync.Mutex
	procs []*Process
}

// Add records p so that Stop stops it.
func (g *Group) Add(p *Process) {
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
}

// Stop stops every process, last started first.
func (g *Group) Stop(grace time.Duration) {
	g.mu.Lock()
	procs := g.procs
	g.procs = nil
	g.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		_ = procs[i].Stop(grace)
	}
}

// Itoa is strconv.Itoa, for building flag lists.
func Itoa(i int) string { return strconv.Itoa(i) }

// getOK is one GET of url with hc: nil when the answer is 200 OK.
func getOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

var errExited = errors.New("process exited")

// waitHTTP waits until url answers 200 OK, failing at once if p exits first, also while a
// request hangs (when another process holds the port p failed to bind, the request goes
// there).
func waitHTTP(ctx context.Context, p *Process, hc *http.Client, url string, timeout time.Duration) error {
	return WaitFor(ctx, p.Name, timeout, 100*time.Millisecond, func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-p.Exited():
				cancel()
			case <-ctx.Done():
			}
		}()
		err := getOK(ctx, hc, url)
		select {
		case <-p.Exited():
			return errExited
		default:
		}
		return err
	})
}
