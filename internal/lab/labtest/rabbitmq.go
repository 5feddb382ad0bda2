package labtest

import (
	"context"
	"sync"
	"testing"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// RabbitMQ starts a broker for t (skipping under -short or when rabbitmq-server is not
// installed, see Check) and stops it when t ends. Starting takes several seconds: share one
// broker per test package (from TestMain through lab.StartRabbitMQ, or behind a sync.Once).
func RabbitMQ(t testing.TB) *lab.RabbitMQ {
	t.Helper()
	Short(t, "RabbitMQ broker")
	r, err := lab.StartRabbitMQ(t.Context(), lab.RabbitMQOptions{})
	Check(t, "RabbitMQ broker", err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log (end):\n%s", r.LogTail(6000))
		}
		_ = r.Stop()
	})
	return r
}

var sharedBroker struct {
	once sync.Once
	r    *lab.RabbitMQ
	err  error
}

// SharedRabbitMQ returns the broker shared by every test of this test binary, starting it on
// first use. Tests isolate themselves by queue and vhost names; tests that stop or crash a
// broker start their own with RabbitMQ. The package's TestMain must stop it:
// goleak.VerifyTestMain(labtest.Main(m)).
func SharedRabbitMQ(t testing.TB) *lab.RabbitMQ {
	t.Helper()
	Short(t, "RabbitMQ broker")
	sharedBroker.once.Do(func() {
		sharedBroker.r, sharedBroker.err = lab.StartRabbitMQ(context.Background(), lab.RabbitMQOptions{})
	})
	Check(t, "RabbitMQ broker", sharedBroker.err)
	return sharedBroker.r
}

func stopSharedRabbitMQ() {
	if sharedBroker.r != nil {
		_ = sharedBroker.r.Stop()
	}
}
