package capacity

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	resourcehelper "k8s.io/component-helpers/resource"
)

// ErrNotFound is returned by Target when the scale target does not exist.
var ErrNotFound = errors.New("scale target not found")

// ErrUnsupportedKind is returned by Target for a kind that is neither a Deployment, a
// StatefulSet nor a resource with a /scale subresource.
var ErrUnsupportedKind = errors.New("unsupported scale target kind")

// TargetRef names a scale target, as a ScaledObject's scaleTargetRef does. APIVersion ""
// means apps/v1.
type TargetRef struct {
	Kind, Name, Namespace, APIVersion string
}

// Cached reports whether Target reads r from the informer caches alone (a Deployment or a
// StatefulSet of apps), without a request to the API server.
func (r TargetRef) Cached() bool {
	gv, err := schema.ParseGroupVersion(orDefault(r.APIVersion, "apps/v1"))
	return err == nil && gv.Group == "apps" && (r.Kind == "Deployment" || r.Kind == "StatefulSet")
}

func (r TargetRef) String() string {
	return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
}

// TargetState is the state of a scale target and of its pods.
type TargetState struct {
	// Spec is the desired replica count, Ready the ready replicas the workload reports.
	Spec, Ready int32
	// PendingUnschedulable counts the target's pods the scheduler could not place
	// (PodScheduled=False, reason Unschedulable).
	PendingUnschedulable int32
	// Footprint is what one pod of the template requests; Limits is what it may use (limits
	// where set, requests elsewhere), for operators who say requests understate real use.
	Footprint Footprint
	Limits    Footprint
	// Constraints are the template's node selector, required node affinity and tolerations.
	Constraints Constraints
	// Pods are the target's pods, sorted by name.
	Pods []Pod
}

// Pod is what the scaler reads of one pod of a target.
type Pod struct {
	Name         string
	IP           string
	Ready        bool
	Phase        string
	DeletionCost *int32 // controller.kubernetes.io/pod-deletion-cost, nil when unset
	Node         string
	// Created is the pod's creationTimestamp; Terminating says it has a deletionTimestamp.
	Created     time.Time
	Terminating bool
}

// Target reads the state of a scale target: Deployments and StatefulSets from the caches,
// other kinds through their /scale subresource (and their spec.template, when they have one,
// for the footprint).
func (c *Cluster) Target(ctx context.Context, ref TargetRef) (TargetState, error) {
	if ref.Name == "" || ref.Kind == "" {
		return TargetState{}, fmt.Errorf("target %q: kind and name are required", ref.String())
	}
	if ref.Cached() {
		var obj any
		var err error
		if ref.Kind == "Deployment" {
			obj, err = c.deployments.Deployments(ref.Namespace).Get(ref.Name)
		} else {
			obj, err = c.statefulSets.StatefulSets(ref.Namespace).Get(ref.Name)
		}
		if err != nil {
			c.forgetTemplate(ref)
			return TargetState{}, notFound(ref, err)
		}
		return c.fromWorkload(ref, obj)
	}
	gv, err := schema.ParseGroupVersion(orDefault(ref.APIVersion, "apps/v1"))
	if err != nil {
		return TargetState{}, fmt.Errorf("target %s: apiVersion %q: %w", ref, ref.APIVersion, err)
	}
	return c.viaScale(ctx, ref, gv)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func notFound(ref TargetRef, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("target %s: %w", ref, ErrNotFound)
	}
	return fmt.Errorf("target %s: %w", ref, err)
}

// workload is what a target reads of a cached Deployment or StatefulSet.
type workload struct {
	generation  int64
	spec, ready int32
	selector    *metav1.LabelSelector
	template    *corev1.PodTemplateSpec
}

// workloadOf reads a Deployment or StatefulSet; false for any other object.
func workloadOf(obj any) (workload, bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return workload{o.Generation, replicas(o.Spec.Replicas), o.Status.ReadyReplicas, o.Spec.Selector, &o.Spec.Template}, true
	case *appsv1.StatefulSet:
		return workload{o.Generation, replicas(o.Spec.Replicas), o.Status.ReadyReplicas, o.Spec.Selector, &o.Spec.Template}, true
	}
	return workload{}, false
}

// fromWorkload reads a target from its cached workload object: the replica counts, what its
// selector and template say, and its pods.
func (c *Cluster) fromWorkload(ref TargetRef, obj any) (TargetState, error) {
	w, _ := workloadOf(obj)
	info, err := c.templateOf(ref, obj, w)
	if err != nil {
		return TargetState{}, err
	}
	st := TargetState{Spec: w.spec, Ready: w.ready, Footprint: info.footprint, Limits: info.limits, Constraints: info.constraints}
	st.Pods, st.PendingUnschedulable = c.podsOf(ref.Namespace, info.selector)
	return st, nil
}

// templateInfo is what one version of a workload's selector and pod template say.
type templateInfo struct {
	selector          labels.Selector
	footprint, limits Footprint
	constraints       Constraints
}

type templateMemo struct {
	obj  any // the cached workload object the info was derived from
	info templateInfo
}

// templateOf derives a target's selector, footprint and constraints, once per version of its
// workload: an object in an informer cache is never modified, a change replaces it, so the
// object's identity says whether the derivation still holds. A planner pass reads every
// target, and most workloads change far less often than that.
func (c *Cluster) templateOf(ref TargetRef, obj any, w workload) (templateInfo, error) {
	c.tmplMu.Lock()
	m, ok := c.tmpl[ref]
	c.tmplMu.Unlock()
	if ok && m.obj == obj {
		return m.info, nil
	}
	selector, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil {
		return templateInfo{}, fmt.Errorf("target %s: selector: %w", ref, err)
	}
	info := templateInfo{selector: selector}
	info.footprint, info.limits = TemplateFootprint(&w.template.Spec)
	info.constraints = TemplateConstraints(&w.template.Spec)
	c.tmplMu.Lock()
	if c.tmpl == nil {
		c.tmpl = map[TargetRef]templateMemo{}
	}
	c.tmpl[ref] = templateMemo{obj: obj, info: info}
	c.tmplMu.Unlock()
	return info, nil
}

// forgetTemplate drops what was derived for a target whose workload is gone.
func (c *Cluster) forgetTemplate(ref TargetRef) {
	c.tmplMu.Lock()
	delete(c.tmpl, ref)
	c.tmplMu.Unlock()
}

// labelIndex indexes pods by "namespace/key=value" for each of their labels.
const labelIndex = "label"

func podLabelKeys(obj any) ([]string, error) {
	p, ok := asPodInfo(obj)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(p.Labels))
	for k, v := range p.Labels {
		keys = append(keys, labelKey(p.Namespace, k, v))
	}
	return keys, nil
}

func labelKey(ns, k, v string) string { return ns + "/" + k + "=" + v }

// podsOf lists the pods of one namespace that match selector. The candidates come from the
// label index, by one label the selector requires (a workload's selector nearly always has
// one, such as app=name), else from the namespace index; then the whole selector filters
// them. Scanning the namespace for every target made a pass over 1,000 targets of one
// namespace cost seconds.
func (c *Cluster) podsOf(ns string, selector labels.Selector) ([]Pod, int32) {
	if selector.Empty() { // an empty selector would select every pod of the namespace
		return nil, 0
	}
	index, key := cache.NamespaceIndex, ns
	if reqs, ok := selector.Requirements(); ok {
		for _, r := range reqs {
			op := r.Operator()
			if vs := r.Values(); (op == selection.Equals || op == selection.DoubleEquals || op == selection.In) && vs.Len() == 1 {
				index, key = labelIndex, labelKey(ns, r.Key(), vs.UnsortedList()[0])
				break
			}
		}
	}
	objs, err := c.pods.GetIndexer().ByIndex(index, key)
	if err != nil {
		return nil, 0
	}
	var pods []Pod
	var pending int32
	for _, obj := range objs {
		p, ok := asPodInfo(obj)
		if !ok || !selector.Matches(labels.Set(p.Labels)) {
			continue
		}
		if p.Unschedulable && p.NodeName == "" && !p.terminal() {
			pending++
		}
		pods = append(pods, Pod{
			Name: p.Name, IP: p.IP, Ready: p.Ready, Phase: string(p.Phase),
			DeletionCost: p.deletionCost(), Node: p.NodeName,
			Created: p.CreationTimestamp.Time, Terminating: p.DeletionTimestamp != nil,
		})
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, pending
}

// TemplateFootprint is what one pod of a template requests, computed as the scheduler does,
// and its limits (the request where a limit is missing).
func TemplateFootprint(spec *corev1.PodSpec) (requests, limits Footprint) {
	pod := &corev1.Pod{Spec: *spec}
	req := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	lim := resourcehelper.PodLimits(pod, resourcehelper.PodResourcesOptions{})
	requests = Footprint{MilliCPU: req.Cpu().MilliValue(), Memory: req.Memory().Value()}
	limits = requests
	if q, ok := lim[corev1.ResourceCPU]; ok && allContainersLimit(spec, corev1.ResourceCPU) {
		limits.MilliCPU = max(q.MilliValue(), requests.MilliCPU)
	}
	if q, ok := lim[corev1.ResourceMemory]; ok && allContainersLimit(spec, corev1.ResourceMemory) {
		limits.Memory = max(q.Value(), requests.Memory)
	}
	return requests, limits
}

// allContainersLimit: a pod's limit means something only when every container sets it (or
// the pod sets a pod-level limit).
func allContainersLimit(spec *corev1.PodSpec, r corev1.ResourceName) bool {
	if spec.Resources != nil {
		if _, ok := spec.Resources.Limits[r]; ok {
			return true
		}
	}
	for _, c := range spec.Containers {
		if _, ok := c.Resources.Limits[r]; !ok {
			return false
		}
	}
	return len(spec.Containers) > 0
}

// TemplateConstraints converts a pod template's placement rules.
func TemplateConstraints(spec *corev1.PodSpec) Constraints {
	var c Constraints
	if len(spec.NodeSelector) > 0 {
		c.NodeSelector = spec.NodeSelector
	}
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			c.Required = append(c.Required, NodeSelectorTerm{
				MatchExpressions: requirements(t.MatchExpressions),
				MatchFields:      requirements(t.MatchFields),
			})
		}
	}
	for _, t := range spec.Tolerations {
		c.Tolerations = append(c.Tolerations, Toleration{Key: t.Key, Operator: string(t.Operator), Value: t.Value, Effect: string(t.Effect)})
	}
	return c
}

func requirements(rs []corev1.NodeSelectorRequirement) []Requirement {
	var out []Requirement
	for _, r := range rs {
		out = append(out, Requirement{Key: r.Key, Operator: string(r.Operator), Values: r.Values})
	}
	return out
}

// viaScale reads any other kind through its /scale subresource.
func (c *Cluster) viaScale(ctx context.Context, ref TargetRef, gv schema.GroupVersion) (TargetState, error) {
	if c.opts.Dynamic == nil {
		return TargetState{}, fmt.Errorf("target %s (%s): %w: only Deployment and StatefulSet without a dynamic client", ref, gv, ErrUnsupportedKind)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.opts.Client.Discovery()))
	mapping, err := mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			return TargetState{}, fmt.Errorf("target %s: kind %q in %s is not served: %w", ref, ref.Kind, gv, ErrUnsupportedKind)
		}
		return TargetState{}, fmt.Errorf("target %s: %w", ref, err)
	}
	res := c.opts.Dynamic.Resource(mapping.Resource).Namespace(ref.Namespace)
	scale, err := res.Get(ctx, ref.Name, metav1.GetOptions{}, "scale")
	if err != nil {
		if apierrors.IsNotFound(err) {
			// Either the object or its scale subresource is missing: tell which.
			if _, gerr := res.Get(ctx, ref.Name, metav1.GetOptions{}); gerr == nil {
				return TargetState{}, fmt.Errorf("target %s: kind %q has no /scale subresource: %w", ref, ref.Kind, ErrUnsupportedKind)
			}
			return TargetState{}, fmt.Errorf("target %s: %w", ref, ErrNotFound)
		}
		return TargetState{}, fmt.Errorf("target %s: read scale: %w", ref, err)
	}
	spec, _, _ := unstructured.NestedInt64(scale.Object, "spec", "replicas")
	selStr, _, _ := unstructured.NestedString(scale.Object, "status", "selector")
	selector, err := labels.Parse(selStr)
	if err != nil {
		return TargetState{}, fmt.Errorf("target %s: scale selector %q: %w", ref, selStr, err)
	}
	st := TargetState{Spec: int32(spec)}
	obj, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return TargetState{}, notFound(ref, err)
	}
	if ready, ok, _ := unstructured.NestedInt64(obj.Object, "status", "readyReplicas"); ok {
		st.Ready = int32(ready)
	}
	if tm, ok, _ := unstructured.NestedMap(obj.Object, "spec", "template"); ok {
		var tmpl corev1.PodTemplateSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tm, &tmpl); err == nil {
			st.Footprint, st.Limits = TemplateFootprint(&tmpl.Spec)
			st.Constraints = TemplateConstraints(&tmpl.Spec)
		}
	}
	st.Pods, st.PendingUnschedulable = c.podsOf(ref.Namespace, selector)
	if _, ok, _ := unstructured.NestedInt64(obj.Object, "status", "readyReplicas"); !ok {
		for _, p := range st.Pods {
			if p.Ready {
				st.Ready++
			}
		}
	}
	return st, nil
}
