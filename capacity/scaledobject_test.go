package capacity_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
)

func scaledObject(ns, name, target string, minR, maxR *int64, triggers ...map[string]any) *unstructured.Unstructured {
	spec := map[string]any{"scaleTargetRef": map[string]any{"name": target}}
	if minR != nil {
		spec["minReplicaCount"] = *minR
	}
	if maxR != nil {
		spec["maxReplicaCount"] = *maxR
	}
	ts := make([]any, len(triggers))
	for i, tr := range triggers {
		ts[i] = tr
	}
	spec["triggers"] = ts
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

func trigger(typ, addr string) map[string]any {
	md := map[string]any{"queue": "jobs"}
	if addr != "" {
		md["scalerAddress"] = addr
	}
	return map[string]any{"type": typ, "metadata": md}
}

func TestScaledObjectsDiscovered(t *testing.T) {
	labtest.Short(t, "Kubernetes control plane")
	k := kube(t)
	g := newGroup(t, k, "scaledobjects")
	const ours = "headroom.keda.svc:9090"
	// Started before the CRD exists: the cluster must find it later.
	c := startCluster(t, k, clusterOpts{dynamic: true, addresses: []string{ours}, crdEvery: 200 * time.Millisecond})
	labtest.Check(t, "KEDA CRDs", lab.InstallKEDACRDs(t.Context(), k)) // KEDA's own CRDs, from its module

	dc, err := dynamic.NewForConfig(k.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	objs := []*unstructured.Unstructured{
		scaledObject(g.name, "pull", "workers-a", i64(1), i64(20), trigger("external", ours)),
		scaledObject(g.name, "push", "workers-b", nil, nil, trigger("cpu", ""), trigger("external-push", ours)),
		scaledObject(g.name, "elsewhere", "workers-c", nil, i64(5), trigger("external", "other:9090")),
		scaledObject(g.name, "rabbit", "workers-d", nil, nil, trigger("rabbitmq", "")),
	}
	for _, o := range objs {
		err := lab.WaitFor(t.Context(), "create ScaledObject", 30*time.Second, 200*time.Millisecond, func(ctx context.Context) error {
			_, err := dc.Resource(capacity.ScaledObjectResource).Namespace(g.name).Create(ctx, o, metav1.CreateOptions{})
			return err // the CRD takes a moment to be served
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	one := int32(1)
	want := []capacity.ScaledObject{
		{Namespace: g.name, Name: "pull", MinReplicas: &one, MaxReplicas: 20,
			Target:   capacity.TargetRef{Kind: "Deployment", Name: "workers-a", Namespace: g.name, APIVersion: "apps/v1"},
			Triggers: []capacity.Trigger{{Type: "external", Metadata: map[string]string{"queue": "jobs", "scalerAddress": ours}}}},
		{Namespace: g.name, Name: "push", MaxReplicas: capacity.DefaultMaxReplicas,
			Target: capacity.TargetRef{Kind: "Deployment", Name: "workers-b", Namespace: g.name, APIVersion: "apps/v1"},
			Triggers: []capacity.Trigger{
				{Type: "cpu", Metadata: map[string]string{"queue": "jobs"}},
				{Type: "external-push", Metadata: map[string]string{"queue": "jobs", "scalerAddress": ours}},
			}},
	}
	eventually(t, "ScaledObjects pointing at this scaler", func() error {
		var got []capacity.ScaledObject
		for _, so := range c.ScaledObjectsFor() {
			if so.Namespace == g.name {
				so.UID = "" // assigned by the API server
				got = append(got, so)
			}
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("ScaledObjectsFor = %+v\nwant %+v", got, want)
		}
		return nil
	})
	eventually(t, "every ScaledObject listed", func() error {
		all := 0
		for _, so := range c.ScaledObjects() {
			if so.Namespace == g.name {
				all++
				if so.UID == "" {
					return fmt.Errorf("ScaledObject %s has no UID", so.Name)
				}
			}
		}
		if all != len(objs) {
			return fmt.Errorf("ScaledObjects = %d in %s, want %d", all, g.name, len(objs))
		}
		return nil
	})
	if !c.Synced() {
		t.Error("Synced = false with the ScaledObject informer running")
	}
	// Nothing changed: the same parsed list again, not a new parse.
	if a, b := c.ScaledObjects(), c.ScaledObjects(); len(a) == 0 || &a[0] != &b[0] {
		t.Error("ScaledObjects parsed the cache again with nothing changed")
	}
	// A change is seen, by the list and by a lookup.
	pull, err := dc.Resource(capacity.ScaledObjectResource).Namespace(g.name).Get(t.Context(), "pull", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(pull.Object, int64(30), "spec", "maxReplicaCount"); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Resource(capacity.ScaledObjectResource).Namespace(g.name).Update(t.Context(), pull, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "updated ScaledObject", func() error {
		so, ok := c.LookupScaledObject(g.name, "pull")
		if !ok || so.MaxReplicas != 30 {
			return fmt.Errorf("LookupScaledObject(pull) = %+v, %v; want maxReplicas 30", so, ok)
		}
		return nil
	})
	if _, ok := c.LookupScaledObject(g.name, "absent"); ok {
		t.Error("LookupScaledObject found a ScaledObject that does not exist")
	}
	// Deleting one is seen.
	if err := dc.Resource(capacity.ScaledObjectResource).Namespace(g.name).Delete(t.Context(), "push", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted ScaledObject gone", func() error {
		for _, so := range c.ScaledObjectsFor() {
			if so.Namespace == g.name && so.Name == "push" {
				return fmt.Errorf("push still listed")
			}
		}
		if _, ok := c.LookupScaledObject(g.name, "push"); ok {
			return fmt.Errorf("push still found by LookupScaledObject")
		}
		return nil
	})
}

func TestTriggersAt(t *testing.T) {
	so := capacity.ScaledObject{Triggers: []capacity.Trigger{
		{Type: "external", Metadata: map[string]string{"scalerAddress": "a:1"}},
		{Type: "external-push", Metadata: map[string]string{"scalerAddress": " A:1 "}},
		{Type: "external", Metadata: map[string]string{"scalerAddress": "b:1"}},
		{Type: "rabbitmq", Metadata: map[string]string{"scalerAddress": "a:1"}},
		{Type: "external", Metadata: map[string]string{}},
	}}
	tests := []struct {
		name  string
		addrs []string
		want  int
	}{
		{name: "none configured", want: 0},
		{name: "one address, case and spaces ignored", addrs: []string{"a:1"}, want: 2},
		{name: "two addresses", addrs: []string{"a:1", "b:1"}, want: 3},
		{name: "other address", addrs: []string{"c:1"}, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(so.TriggersAt(tc.addrs)); got != tc.want {
				t.Errorf("TriggersAt(%q) = %d triggers, want %d", tc.addrs, got, tc.want)
			}
		})
	}
}

func TestTargetRefCached(t *testing.T) {
	tests := []struct {
		ref  capacity.TargetRef
		want bool
	}{
		{capacity.TargetRef{Kind: "Deployment"}, true}, // apiVersion defaults to apps/v1
		{capacity.TargetRef{Kind: "Deployment", APIVersion: "apps/v1"}, true},
		{capacity.TargetRef{Kind: "StatefulSet", APIVersion: "apps/v1"}, true},
		{capacity.TargetRef{Kind: "ReplicaSet", APIVersion: "apps/v1"}, false},
		{capacity.TargetRef{Kind: "Deployment", APIVersion: "extensions/v1beta1"}, false},
		{capacity.TargetRef{Kind: "Rollout", APIVersion: "argoproj.io/v1alpha1"}, false},
		{capacity.TargetRef{Kind: "Deployment", APIVersion: "a/b/c"}, false},
	}
	for _, tc := range tests {
		if got := tc.ref.Cached(); got != tc.want {
			t.Errorf("%+v.Cached() = %v, want %v", tc.ref, got, tc.want)
		}
	}
}
