package queue_test

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

// shared is one broker for the package's tests (starting one takes several seconds); tests
// that stop or crash a broker start their own.
var shared struct {
	once sync.Once
	r    *lab.RabbitMQ
	err  error
}

// TestMain checks for leaked goroutines like goleak.VerifyTestMain, but only after the shared
// broker is stopped (its process watcher is a goroutine owned by the broker, not a leak).
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.r != nil {
		_ = shared.r.Stop()
	}
	// The admin helper talks through the default transport; its idle connections are not
	// leaks.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedBroker returns the package's broker, starting it on first use.
func sharedBroker(t testing.TB) *lab.RabbitMQ {
	t.Helper()
	labtest.Short(t, "RabbitMQ broker")
	shared.once.Do(func() {
		shared.r, shared.err = lab.StartRabbitMQ(context.Background(), lab.RabbitMQOptions{})
	})
	labtest.Check(t, "RabbitMQ broker", shared.err)
	return shared.r
}
