package labtest

import (
	"context"
	"testing"
	"time"

	"github.com/headroom-autoscaler/headroom/internal/lab"
)

// KEDA starts KEDA's operator and metrics adapter against kube for t (skipping under -short or
// when the KEDA binaries are not built, see Check) and stops them when t ends. Start one KEDA
// per control plane: the external.metrics.k8s.io APIService has one backend.
func KEDA(t testing.TB, kube *lab.Kube, opts lab.KEDAOptions) *lab.KEDA {
	t.Helper()
	Short(t, "KEDA operator")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k, err := lab.StartKEDA(ctx, kube, opts)
	Check(t, "KEDA operator", err)
	t.Cleanup(k.Stop)
	return k
}

// Workers starts the worker emulator for t and closes it when t ends.
func Workers(t testing.TB, opts lab.WorkerOptions) *lab.Workers {
	t.Helper()
	w, err := lab.StartWorkers(t.Context(), opts)
	if err != nil {
		t.Fatalf("start workers: %v", err)
	}
	t.Cleanup(w.Close)
	return w
}
