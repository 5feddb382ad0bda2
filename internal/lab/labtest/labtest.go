// Package labtest adapts package lab to tests: it starts a component for one test (or one
// package, from TestMain), registers its stop with t.Cleanup, and decides between skip and
// failure when the component cannot be had on this machine.
//
// The rule: under -short every real-component test skips. Otherwise, if a component is
// unavailable (lab.ErrUnavailable) the test skips with a message naming what is missing and
// the command that installs it, unless HEADROOM_REAL=1 (set by the project's test command),
// in which case it fails.
package labtest

import (
	"errors"
	"testing"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// Short skips t under -short, naming the component the test needs.
func Short(t testing.TB, component string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping: needs a real %s (run without -short, or `make test`)", component)
	}
}

// Check turns an error from starting a component into a skip or a failure.
func Check(t testing.TB, component string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, lab.ErrUnavailable) && !lab.Required() {
		t.Skipf("skipping: %s is not available here (%v); `make deps` installs it, HEADROOM_REAL=1 turns this skip into a failure", component, err)
	}
	t.Fatalf("start %s: %v", component, err)
}
