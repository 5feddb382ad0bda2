package server_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// TestMain checks for leaked goroutines after the shared broker and control plane are
// stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(labtest.Main(m),
		// client-go keeps process-wide helpers: the klog flush daemon, idle keep-alive
		// connections of its shared transport cache, a workqueue metrics loop.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Type).updateUnfinishedWorkLoop"),
	)
}
