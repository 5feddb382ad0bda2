package capacity

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// ScaledObjectResource is KEDA's ScaledObject, read without importing KEDA.
var ScaledObjectResource = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}

// DefaultMaxReplicas is KEDA's maxReplicaCount when a ScaledObject sets none.
const DefaultMaxReplicas = 100

// Trigger types through which KEDA calls an external scaler.
const (
	TriggerExternal     = "external"
	TriggerExternalPush = "external-push"
)

// ScaledObject is what the scaler needs of a KEDA ScaledObject.
type ScaledObject struct {
	Namespace, Name, UID string
	// Target is spec.scaleTargetRef, in the ScaledObject's namespace; Kind defaults to
	// Deployment and APIVersion to apps/v1, as in KEDA.
	Target TargetRef
	// MinReplicas is spec.minReplicaCount, nil when unset (KEDA then uses 0).
	MinReplicas *int32
	// MaxReplicas is spec.maxReplicaCount, DefaultMaxReplicas when unset.
	MaxReplicas int32
	Triggers    []Trigger
	// Behavior is spec.advanced.horizontalPodAutoscalerConfig.behavior, which KEDA copies
	// into the HPA; nil when unset. BehaviorErr says why it could not be read (Behavior is
	// then nil).
	Behavior    *autoscalingv2.HorizontalPodAutoscalerBehavior
	BehaviorErr string
}

// Trigger is one entry of spec.triggers.
type Trigger struct {
	Type string
	Name string
	// MetricType is the trigger's metricType as written ("" when unset: KEDA's default,
	// AverageValue).
	MetricType string
	Metadata   map[string]string
}

// TriggersAt returns the indices in s.Triggers of the triggers through which KEDA calls a
// scaler at one of addresses: type external or external-push with a matching scalerAddress
// (case and surrounding spaces aside).
func (s ScaledObject) TriggersAt(addresses []string) []int {
	var out []int
	for i, t := range s.Triggers {
		if t.Type != TriggerExternal && t.Type != TriggerExternalPush {
			continue
		}
		got := strings.TrimSpace(t.Metadata["scalerAddress"])
		for _, a := range addresses {
			if got != "" && strings.EqualFold(got, strings.TrimSpace(a)) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// ScaledObjects returns every ScaledObject in the cache, sorted by namespace and name.
// Without the CRD installed (or without a dynamic client) the list is empty. The list and
// what it holds are shared by every caller until a ScaledObject changes: read them, do not
// modify them. An object is parsed again only when its resourceVersion changes, so a planner
// pass over 1,000 unchanged ScaledObjects parses none.
func (c *Cluster) ScaledObjects() []ScaledObject {
	c.soMu.Lock()
	defer c.soMu.Unlock()
	if c.soInf == nil {
		return nil
	}
	// The informer updates its store before it runs the handlers that count versions: a
	// list taken after reading v holds at least what v counted, and a later event moves the
	// version past v, so the next call lists again.
	v := c.soVersion.Load()
	if c.soList != nil && c.soListAt == v {
		return c.soList
	}
	objs := c.soInf.GetStore().List()
	out := make([]ScaledObject, 0, len(objs))
	parsed := make(map[soKey]parsedScaledObject, len(objs))
	for _, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		k := soKey{u.GetNamespace(), u.GetName()}
		p, ok := c.soParsed[k]
		if !ok || p.resourceVersion != u.GetResourceVersion() {
			p = parsedScaledObject{resourceVersion: u.GetResourceVersion(), so: ParseScaledObject(u)}
		}
		parsed[k] = p
		out = append(out, p.so)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	c.soList, c.soListAt, c.soParsed = out, v, parsed
	return out
}

type soKey struct{ namespace, name string }

type parsedScaledObject struct {
	resourceVersion string
	so              ScaledObject
}

// LookupScaledObject returns the ScaledObject namespace/name from the cache.
func (c *Cluster) LookupScaledObject(namespace, name string) (ScaledObject, bool) {
	list := c.ScaledObjects()
	i, ok := sort.Find(len(list), func(i int) int {
		if c := strings.Compare(namespace, list[i].Namespace); c != 0 {
			return c
		}
		return strings.Compare(name, list[i].Name)
	})
	if !ok {
		return ScaledObject{}, false
	}
	return list[i], true
}

// ScaledObjectsFor returns the ScaledObjects with at least one trigger pointing at
// Options.ScalerAddresses.
func (c *Cluster) ScaledObjectsFor() []ScaledObject {
	var out []ScaledObject
	for _, so := range c.ScaledObjects() {
		if len(so.TriggersAt(c.opts.ScalerAddresses)) > 0 {
			out = append(out, so)
		}
	}
	return out
}

// ParseScaledObject reads what the scaler needs of a ScaledObject, as the cache does (also
// for checking manifests offline).
func ParseScaledObject(u *unstructured.Unstructured) ScaledObject {
	so := ScaledObject{Namespace: u.GetNamespace(), Name: u.GetName(), UID: string(u.GetUID()), MaxReplicas: DefaultMaxReplicas}
	ref, _, _ := unstructured.NestedMap(u.Object, "spec", "scaleTargetRef")
	so.Target = TargetRef{
		Kind:       str(ref["kind"]),
		Name:       str(ref["name"]),
		APIVersion: str(ref["apiVersion"]),
		Namespace:  so.Namespace,
	}
	if so.Target.Kind == "" {
		so.Target.Kind = "Deployment"
	}
	if so.Target.APIVersion == "" {
		so.Target.APIVersion = "apps/v1"
	}
	if v, ok, _ := unstructured.NestedInt64(u.Object, "spec", "minReplicaCount"); ok {
		n := int32(v)
		so.MinReplicas = &n
	}
	if v, ok, _ := unstructured.NestedInt64(u.Object, "spec", "maxReplicaCount"); ok {
		so.MaxReplicas = int32(v)
	}
	if b, ok, err := unstructured.NestedMap(u.Object, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior"); err != nil {
		so.BehaviorErr = err.Error()
	} else if ok {
		so.Behavior = new(autoscalingv2.HorizontalPodAutoscalerBehavior)
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b, so.Behavior); err != nil {
			so.Behavior, so.BehaviorErr = nil, err.Error()
		}
	}
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	for _, t := range triggers {
		m, ok := t.(map[string]any)
		if !ok {
			continue
		}
		tr := Trigger{Type: str(m["type"]), Name: str(m["name"]), MetricType: str(m["metricType"]), Metadata: map[string]string{}}
		if md, ok := m["metadata"].(map[string]any); ok {
			for k, v := range md {
				tr.Metadata[k] = str(v)
			}
		}
		so.Triggers = append(so.Triggers, tr)
	}
	return so
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case nil:
		return ""
	default:
		return fmt.Sprint(s)
	}
}

// crdInstalled asks discovery whether keda.sh/v1alpha1 serves scaledobjects.
func (c *Cluster) crdInstalled() bool {
	list, err := c.opts.Client.Discovery().ServerResourcesForGroupVersion(ScaledObjectResource.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == ScaledObjectResource.Resource {
			return true
		}
	}
	return false
}

// startScaledObjects starts the ScaledObject informer when the CRD is installed.
func (c *Cluster) startScaledObjects(ctx context.Context) bool {
	if !c.crdInstalled() {
		return false
	}
	inf := c.dynamic.ForResource(ScaledObjectResource).Informer()
	if c.dynTf != nil {
		_ = inf.SetTransform(c.dynTf)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.soVersion.Add(1); c.version.Add(1) },
		UpdateFunc: func(any, any) { c.soVersion.Add(1); c.version.Add(1) },
		DeleteFunc: func(any) { c.soVersion.Add(1); c.version.Add(1) },
	})
	if err != nil {
		return false
	}
	c.soMu.Lock()
	c.soInf, c.soSynced = inf, reg.HasSynced
	c.soMu.Unlock()
	c.dynamic.Start(ctx.Done())
	return true
}

func (c *Cluster) waitForCRD(ctx context.Context) {
	t := time.NewTicker(c.opts.CRDInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c.startScaledObjects(ctx) {
				return
			}
		}
	}
}
