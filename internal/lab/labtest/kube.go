package labtest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// Kube starts a control plane for one test and stops it when the test ends. Use SharedKube
// when several tests of a package can share one.
func Kube(t testing.TB, opts lab.KubeOptions) *lab.Kube {
	t.Helper()
	Short(t, "Kubernetes control plane")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	k, err := lab.StartKube(ctx, opts)
	Check(t, "Kubernetes control plane", err)
	t.Cleanup(k.Stop)
	t.Logf("control plane started in %s (%s)", time.Since(start).Round(10*time.Millisecond), k.Dir)
	return k
}

type sharedKube struct {
	once sync.Once
	kube *lab.Kube
	err  error
}

var (
	sharedMu sync.Mutex
	shared   = map[lab.KubeOptions]*sharedKube{}
)

// SharedKube returns the control plane shared by every test of this test binary that asks
// for the same options, starting it on first use. Tests isolate themselves by namespace and
// node names. The package's TestMain must stop it: goleak.VerifyTestMain(labtest.Main(m)).
func SharedKube(t testing.TB, opts lab.KubeOptions) *lab.Kube {
	t.Helper()
	Short(t, "Kubernetes control plane")
	sharedMu.Lock()
	s, ok := shared[opts]
	if !ok {
		s = &sharedKube{}
		shared[opts] = s
	}
	sharedMu.Unlock()
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		s.kube, s.err = lab.StartKube(ctx, opts)
		if s.err == nil {
			t.Logf("control plane started in %s (%s)", time.Since(start).Round(10*time.Millisecond), s.kube.Dir)
		}
	})
	Check(t, "Kubernetes control plane", s.err)
	return s.kube
}

// StopShared stops every control plane SharedKube started and the broker SharedRabbitMQ
// started.
func StopShared() {
	stopSharedRabbitMQ()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for o, s := range shared {
		if s.kube != nil {
			s.kube.Stop()
		}
		delete(shared, o)
	}
}

// M is what TestMain hands to goleak.VerifyTestMain (or calls Run on itself): it runs the
// tests, then stops the shared components, so that their goroutines are gone before the
// leak check.
type M struct{ m *testing.M }

// Main wraps m; see M.
func Main(m *testing.M) M { return M{m: m} }

// Run runs the tests and stops the shared components. It also closes the idle connections
// of http.DefaultTransport, which the broker's admin helper uses: they are not leaks.
func (m M) Run() int {
	code := m.m.Run()
	StopShared()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	return code
}

// String names the wrapper in failure messages.
func (m M) String() string { return fmt.Sprintf("labtest.M(%p)", m.m) }
