package labtest

import (
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
