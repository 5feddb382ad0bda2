package manifests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

// kedaCRDs are KEDA's CustomResourceDefinitions the manifests use (ScaledObject,
// ClusterTriggerAuthentication) and their siblings, from the KEDA release the project targets.
var kedaCRDs = func() []lab.ModuleFileRef {
	var out []lab.ModuleFileRef
	for _, f := range []string{"scaledobjects", "scaledjobs", "triggerauthentications", "clustertriggerauthentications"} {
		out = append(out, lab.ModuleFileRef{Module: lab.ScaledObjectCRD.Module, Version: lab.ScaledObjectCRD.Version,
			Path: "config/crd/bases/keda.sh_" + f + ".yaml"})
	}
	return out
}()

// cluster is a control plane with the CRDs and namespaces the manifests need.
type cluster struct {
	kube    *lab.Kube
	kubectl string
}

var (
	crdOnce sync.Once
	crdErr  error
)

// realCluster returns the package's shared control plane, with KEDA's and the Prometheus
// Operator's CRDs installed and the namespaces headroom, keda and jobs created.
func realCluster(t *testing.T) cluster {
	t.Helper()
	k := labtest.SharedKube(t, lab.KubeOptions{})
	kubectl, err := lab.Binary("kubectl")
	labtest.Check(t, "kubectl", err)
	c := cluster{kube: k, kubectl: kubectl}
	crdOnce.Do(func() { crdErr = c.install(context.Background()) })
	if crdErr != nil {
		t.Fatal(crdErr)
	}
	return c
}

func (c cluster) install(ctx context.Context) error {
	refs := append(append([]lab.ModuleFileRef{}, kedaCRDs...), lab.ServiceMonitorCRD, lab.PrometheusRuleCRD)
	for _, ref := range refs {
		path, err := ref.Fetch(ctx)
		if err != nil {
			return fmt.Errorf("fetch CRD %s: %w", ref.Path, err)
		}
		// Server-side apply: KEDA's CRDs are too large for the last-applied annotation.
		if out, err := c.run(ctx, "", "apply", "--server-side", "-f", path); err != nil {
			return fmt.Errorf("install CRD %s: %w\n%s", ref.Path, err, out)
		}
		name := strings.TrimSuffix(filepath.Base(ref.Path), ".yaml")
		group, plural, _ := strings.Cut(name, "_")
		// Polled rather than `kubectl wait`, which fails on a CRD that has no status yet.
		err = lab.WaitFor(ctx, "CRD "+plural+"."+group+" established", time.Minute, 100*time.Millisecond, func(ctx context.Context) error {
			out, err := c.run(ctx, "", "get", "crd/"+plural+"."+group, "-o", `jsonpath={.status.conditions[?(@.type=="Established")].status}`)
			if err == nil && out != "True" {
				err = fmt.Errorf("established: %q", out)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, ns := range []string{"headroom", "keda", "jobs"} {
		_, err := c.kube.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	return nil
}

// run runs kubectl against the cluster from dir ("" for the current one).
func (c cluster) run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.kubectl, append([]string{"--kubeconfig", c.kube.Kubeconfig}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestServerSideDryRun applies every kustomization exactly as a user would (kubectl apply -k,
// kubectl's own kustomize) with --dry-run=server against a real API server: every object
// must pass the API server's validation, admission and the CRDs' schemas.
func TestServerSideDryRun(t *testing.T) {
	c := realCluster(t)
	for _, dir := range Dirs {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			out, err := c.run(t.Context(), ".", "apply", "-k", dir, "--dry-run=server")
			if err != nil {
				t.Fatalf("kubectl apply -k %s --dry-run=server: %v\n%s", dir, err, out)
			}
			accepted := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.HasSuffix(line, "(server dry run)") {
					accepted++
				}
			}
			if accepted != len(objs) {
				t.Errorf("%d of %d objects accepted:\n%s", accepted, len(objs), out)
			}
		})
	}
}

// TestServerSideDryRunRejects shows that the dry run enforces the CRD schemas: a
// ScaledObject with a fallback behavior KEDA does not know is refused.
func TestServerSideDryRunRejects(t *testing.T) {
	c := realCluster(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	err := os.WriteFile(bad, []byte(`apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: bad, namespace: jobs}
spec:
  scaleTargetRef: {name: loader}
  fallback: {failureThreshold: 3, replicas: 1, behavior: sometimes}
  triggers:
  - type: external
    metadata: {scalerAddress: "headroom.headroom.svc.cluster.local:9090"}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.run(t.Context(), "", "apply", "-f", bad, "--dry-run=server")
	if err == nil || !strings.Contains(out, "sometimes") {
		t.Errorf("kubectl apply of an invalid ScaledObject: %v, want a rejection naming the bad value\n%s", err, out)
	}
}

// TestHPAKeepsToleranceZero shows that the API server keeps the HPA's tolerance field, which
// the examples set to 0 (dropped where the HPAConfigurableTolerance gate is off).
func TestHPAKeepsToleranceZero(t *testing.T) {
	c := realCluster(t)
	zero := resource.MustParse("0")
	window := int32(0)
	rules := &autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: &window,
		Tolerance:                  &zero,
		Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 20, PeriodSeconds: 15}},
	}
	target := resource.MustParse("1")
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "keda-hpa-loader", Namespace: "jobs"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "loader"},
			MaxReplicas:    20,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "s0-headroom"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &target},
			}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules, ScaleDown: rules},
		},
	}
	got, err := c.kube.Client().AutoscalingV2().HorizontalPodAutoscalers("jobs").Create(t.Context(), hpa, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*autoscalingv2.HPAScalingRules{"scaleUp": got.Spec.Behavior.ScaleUp, "scaleDown": got.Spec.Behavior.ScaleDown} {
		if r == nil || r.Tolerance == nil || !r.Tolerance.IsZero() {
			t.Errorf("%s tolerance after admission = %v, want 0 kept (Kubernetes %s)", name, r, lab.KubeVersion)
		}
	}
}
