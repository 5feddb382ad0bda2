package lab_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// TestMain stops the shared components after the tests, then checks that no goroutine
// (informers, worker connections, gRPC servers) outlived them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(labtest.Main(m))
}
