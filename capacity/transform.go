package capacity

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	resourcehelper "k8s.io/component-helpers/resource"
)

// DeletionCostAnnotation is the annotation the ReplicaSet controller reads to choose which
// pods to delete first; it is the only pod annotation the cache keeps.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// podInfo is the cached form of a pod: the transform replaces every *corev1.Pod with one, so
// that 150,000 pods fit in a few tens of megabytes. Requests are computed once, the way the
// scheduler computes them (containers, restartable init containers, the largest init
// container, overhead, pod-level resources).
type podInfo struct {
	metav1.ObjectMeta
	NodeName      string
	Phase         corev1.PodPhase
	IP            string
	Requests      Resources // Pods is always 1
	Ready         bool      // condition Ready=True
	Unschedulable bool      // condition PodScheduled=False, reason Unschedulable
}

func (p *podInfo) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *podInfo) DeepCopyObject() runtime.Object {
	c := *p
	p.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

// terminal pods (Succeeded, Failed) hold no resources: the scheduler does not count them.
func (p *podInfo) terminal() bool {
	return p.Phase == corev1.PodSucceeded || p.Phase == corev1.PodFailed
}

func (p *podInfo) deletionCost() *int32 {
	v, ok := p.Annotations[DeletionCostAnnotation]
	if !ok {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return nil
	}
	c := int32(n)
	return &c
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	reqs := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	p := &podInfo{
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         pod.Namespace,
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			Labels:            pod.Labels,
			CreationTimestamp: pod.CreationTimestamp,
			DeletionTimestamp: pod.DeletionTimestamp,
		},
		NodeName: pod.Spec.NodeName,
		Phase:    pod.Status.Phase,
		IP:       pod.Status.PodIP,
		Requests: Resources{MilliCPU: reqs.Cpu().MilliValue(), Memory: reqs.Memory().Value(), Pods: 1},
	}
	if v, ok := pod.Annotations[DeletionCostAnnotation]; ok {
		p.Annotations = map[string]string{DeletionCostAnnotation: v}
	}
	for _, c := range pod.Status.Conditions {
		switch {
		case c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue:
			p.Ready = true
		case c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable:
			p.Unschedulable = true
		}
	}
	return p
}

// transform strips every object before it enters an informer cache (see the package
// documentation). It is idempotent: the informer may hand it objects it already transformed.
func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return newPodInfo(o), nil
	case *corev1.Node:
		stripNode(o)
	case *appsv1.Deployment:
		stripMeta(&o.ObjectMeta)
		stripTemplate(&o.Spec.Template)
		o.Status.Conditions = nil
	case *appsv1.StatefulSet:
		stripMeta(&o.ObjectMeta)
		stripTemplate(&o.Spec.Template)
		o.Spec.VolumeClaimTemplates = nil
		o.Status.Conditions = nil
	case *unstructured.Unstructured:
		unstructured.RemoveNestedField(o.Object, "metadata", "managedFields")
		unstructured.RemoveNestedField(o.Object, "metadata", "annotations")
		unstructured.RemoveNestedField(o.Object, "status")
	}
	return obj, nil
}

func stripMeta(m *metav1.ObjectMeta) {
	m.ManagedFields = nil
	m.Annotations = nil
	m.OwnerReferences = nil
	m.Finalizers = nil
}

func stripNode(n *corev1.Node) {
	stripMeta(&n.ObjectMeta)
	n.Spec.PodCIDR, n.Spec.PodCIDRs, n.Spec.ProviderID = "", nil, ""
	var ready []corev1.NodeCondition
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	n.Status = corev1.NodeStatus{Allocatable: n.Status.Allocatable, Conditions: ready}
}

// stripTemplate keeps what the footprint and the constraints read: resources, node
// selector, required node affinity, tolerations, overhead.
func stripTemplate(t *corev1.PodTemplateSpec) {
	t.ObjectMeta = metav1.ObjectMeta{}
	s := &t.Spec
	keep := corev1.PodSpec{
		NodeSelector: s.NodeSelector,
		Tolerations:  s.Tolerations,
		Overhead:     s.Overhead,
		Resources:    s.Resources,
	}
	if s.Affinity != nil && s.Affinity.NodeAffinity != nil && s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		keep.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
		}}
	}
	for _, c := range s.Containers {
		keep.Containers = append(keep.Containers, corev1.Container{Name: c.Name, Resources: c.Resources})
	}
	for _, c := range s.InitContainers {
		keep.InitContainers = append(keep.InitContainers, corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy})
	}
	*s = keep
}
