package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stack that fails to start returns the error and removes what it made, rather than
// panicking in its own clean-up: the failing step's error is what the operator needs to see.
func TestStartStackFailureCleansUp(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // every component's start fails at once
	s, err := StartStack(ctx, StackOptions{ScalerBinary: filepath.Join(tmp, "no-such-scaler")})
	if err == nil {
		s.Stop()
		t.Fatal("StartStack on a cancelled context: no error")
	}
	if s != nil {
		t.Errorf("StartStack returned a stack with the error %v", err)
	}
	left, readErr := os.ReadDir(tmp)
	if readErr != nil {
		t.Fatal(readErr)
	}
	for _, e := range left {
		t.Errorf("left behind after the failed start: %s", e.Name())
	}
}

func TestStartStackRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts StackOptions
		want string
	}{
		{"negative replicas", StackOptions{ScalerReplicas: -1}, "scaler replicas -1 is negative"},
		{"negative refresh", StackOptions{Refresh: -1}, "refresh -1ns is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := StartStack(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("StartStack(%+v) = %v, want an error with %q", tc.opts, err, tc.want)
			}
		})
	}
}
