package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// shared is one broker for the package's tests (starting one takes several seconds).
var shared struct {
	once sync.Once
	r    *lab.RabbitMQ
	err  error
}

func TestMain(m *testing.M) {
	code := labtest.Main(m).Run() // stops the shared control plane
	if shared.r != nil {
		_ = shared.r.Stop()
	}
	// The broker admin helper uses the default transport; idle connections are not leaks.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(
			// client-go keeps process-wide helpers: the klog flush daemon, idle keep-alive
			// connections of its shared transport cache, a workqueue metrics loop.
			goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Type).updateUnfinishedWorkLoop"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sharedBroker(t testing.TB) *lab.RabbitMQ {
	t.Helper()
	labtest.Short(t, "RabbitMQ broker")
	shared.once.Do(func() {
		shared.r, shared.err = lab.StartRabbitMQ(context.Background(), lab.RabbitMQOptions{})
	})
	labtest.Check(t, "RabbitMQ broker", shared.err)
	return shared.r
}
