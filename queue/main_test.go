package queue_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// TestMain checks for leaked goroutines after the shared broker (labtest.SharedRabbitMQ) is
// stopped: its process watcher is a goroutine owned by the broker, not a leak.
func TestMain(m *testing.M) { goleak.VerifyTestMain(labtest.Main(m)) }
