package capacity

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func req(cpu, mem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
	}}
}

func TestTransformPod(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7",
			Labels:        map[string]string{"app": "w"},
			Annotations:   map[string]string{DeletionCostAnnotation: "-5", "other": "dropped"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}},
		},
		Spec: corev1.PodSpec{
			NodeName: "n1",
			InitContainers: []corev1.Container{
				{Name: "init", Resources: req("2", "1Gi")},                                // runs alone: max with the rest
				{Name: "sidecar", Resources: req("100m", "64Mi"), RestartPolicy: &always}, // runs alongside: adds
			},
			Containers: []corev1.Container{{Name: "a", Resources: req("500m", "256Mi")}, {Name: "b", Resources: req("250m", "128Mi")}},
			Overhead:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodPending, PodIP: "127.16.0.9",
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes"},
			},
		},
	}
	out, err := transform(pod)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := out.(*podInfo)
	if !ok {
		t.Fatalf("transform returned %T, want *podInfo", out)
	}
	// init "2" + sidecar already counted before it: max(2000+0, 100+500+250) = 2000, + 10m overhead.
	if want := (Resources{MilliCPU: 2010, Memory: 1 << 30, Pods: 1}); p.Requests != want {
		t.Errorf("Requests = %+v, want %+v", p.Requests, want)
	}
	if !p.Unschedulable || p.Ready || p.NodeName != "n1" || p.IP != "127.16.0.9" || p.Phase != corev1.PodPending {
		t.Errorf("podInfo = %+v", p)
	}
	if len(p.Annotations) != 1 || p.ManagedFields != nil {
		t.Errorf("metadata not stripped: annotations %v managedFields %v", p.Annotations, p.ManagedFields)
	}
	if c := p.deletionCost(); c == nil || *c != -5 {
		t.Errorf("deletionCost = %v, want -5", c)
	}
	again, _ := transform(p)
	if again != p {
		t.Error("transform is not idempotent on its own output")
	}
	if cp, ok := p.DeepCopyObject().(*podInfo); !ok || cp == p || cp.Name != "p" {
		t.Errorf("DeepCopyObject = %#v", cp)
	}
}

func TestTransformNodeAndDeployment(t *testing.T) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"x": "y"}},
		Spec:       corev1.NodeSpec{Unschedulable: true, Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue, Message: "long"}},
			Images:      []corev1.ContainerImage{{Names: []string{"img"}}},
		},
	}
	_, _ = transform(node)
	if node.Annotations != nil || node.Status.Images != nil || len(node.Status.Conditions) != 1 || node.Status.Conditions[0].Message != "" {
		t.Errorf("node not stripped: %+v", node)
	}
	n := nodeFromAPI(node)
	if n.Schedulable || n.Allocatable.MilliCPU != 4000 || len(n.Taints) != 1 || n.Labels["a"] != "b" {
		t.Errorf("nodeFromAPI = %+v", n)
	}

	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "w"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"pool": "a"},
				Tolerations:  []corev1.Toleration{{Key: "t", Operator: corev1.TolerationOpExists}},
				Affinity: &corev1.Affinity{
					NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
						NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "z", Operator: corev1.NodeSelectorOpIn, Values: []string{"1"}}}}},
					}},
					PodAntiAffinity: &corev1.PodAntiAffinity{},
				},
				Containers: []corev1.Container{{Name: "c", Image: "img", Env: []corev1.EnvVar{{Name: "A"}}, Resources: req("1", "1Gi")}},
				Volumes:    []corev1.Volume{{Name: "v"}},
			},
		}},
	}
	_, _ = transform(dep)
	s := dep.Spec.Template.Spec
	if dep.ManagedFields != nil || s.Volumes != nil || s.Containers[0].Env != nil || s.Containers[0].Image != "" || s.Affinity.PodAntiAffinity != nil {
		t.Errorf("deployment not stripped: %+v", s)
	}
	fp, _ := TemplateFootprint(&s)
	if want := (Footprint{MilliCPU: 1000, Memory: 1 << 30}); fp != want {
		t.Errorf("footprint after transform = %+v, want %+v", fp, want)
	}
	c := TemplateConstraints(&s)
	if c.NodeSelector["pool"] != "a" || len(c.Required) != 1 || len(c.Tolerations) != 1 {
		t.Errorf("constraints after transform = %+v", c)
	}

	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": "so", "managedFields": []any{"x"}, "annotations": map[string]any{"a": "b"}},
		"spec":     map[string]any{"maxReplicaCount": int64(3)},
		"status":   map[string]any{"conditions": []any{}},
	}}
	_, _ = transform(u)
	if _, ok := u.Object["status"]; ok || u.GetManagedFields() != nil || u.GetAnnotations() != nil {
		t.Errorf("unstructured not stripped: %v", u.Object)
	}
}

func TestTemplateFootprintLimits(t *testing.T) {
	tests := []struct {
		name       string
		containers []corev1.Container
		want       Footprint
	}{
		{
			name:       "limits everywhere",
			containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: req("500m", "1Gi").Requests, Limits: req("2", "2Gi").Requests}}},
			want:       Footprint{MilliCPU: 2000, Memory: 2 << 30},
		},
		{
			name: "a container without a cpu limit falls back to requests for cpu",
			containers: []corev1.Container{
				{Resources: corev1.ResourceRequirements{Requests: req("500m", "1Gi").Requests, Limits: req("2", "2Gi").Requests}},
				{Resources: corev1.ResourceRequirements{Requests: req("100m", "1Gi").Requests, Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}},
			},
			want: Footprint{MilliCPU: 600, Memory: 3 << 30},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, got := TemplateFootprint(&corev1.PodSpec{Containers: tc.containers})
			if got != tc.want {
				t.Errorf("limits = %+v, want %+v", got, tc.want)
			}
		})
	}
}
