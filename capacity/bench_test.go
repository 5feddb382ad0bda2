package capacity_test

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/headroom-autoscaler/headroom/capacity"
)

// The benchmarks feed the real informers from client-go's fake clientset: a real API server
// with 5,000 nodes and 150,000 pods does not fit on this machine, and the fake is used for
// scale only (behaviour is tested against the real control plane).

const (
	benchNodes = 5000
	benchPods  = 150000
)

func benchNode(i int) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("node-%05d", i), UID: types.UID(fmt.Sprintf("uid-node-%05d", i)), ResourceVersion: "1",
			Labels: map[string]string{
				"kubernetes.io/hostname": fmt.Sprintf("node-%05d", i), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%3), "node.kubernetes.io/instance-type": "m6i.8xlarge",
				"pool": []string{"general", "batch", "gpu"}[i%3],
			},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
		},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
			},
			Images: []corev1.ContainerImage{{Names: []string{"registry.example.com/worker@sha256:0123456789abcdef", "registry.example.com/worker:v1.2.3"}, SizeBytes: 123456789}},
		},
	}
	if i%10 == 0 {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	}
	return n
}

// benchPod is a pod as a Deployment creates it in a real cluster: managed fields, a few
// annotations, env, mounts, probes, status with container statuses.
func benchPod(i int) *corev1.Pod {
	name := fmt.Sprintf("worker-7d9f8c6b5-%06d", i)
	ts := metav1.NewTime(time.Unix(1700000000, 0))
	fields := metav1.NewFieldsV1(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0b5e\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"worker\"}":{".":{},"f:env":{},"f:image":{},"f:name":{},"f:resources":{".":{},"f:limits":{},"f:requests":{}}}}}}`)
	c := corev1.Container{
		Name: "worker", Image: "registry.example.com/worker:v1.2.3",
		Args: []string{"--queue", "jobs", "--prefetch", "1"},
		Env: []corev1.EnvVar{
			{Name: "AMQP_URL", Value: "amqp://rabbitmq.default.svc:5672/"}, {Name: "LOG_LEVEL", Value: "info"},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
		VolumeMounts:   []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz"}}, PeriodSeconds: 5},
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: fmt.Sprintf("team-%d", i%20), UID: types.UID(fmt.Sprintf("0b5e2c1a-1111-2222-3333-%012d", i)),
			ResourceVersion: fmt.Sprint(1000 + i), GenerateName: "worker-7d9f8c6b5-", CreationTimestamp: ts,
			Labels:          map[string]string{"app": "worker", "pod-template-hash": "7d9f8c6b5"},
			Annotations:     map[string]string{"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "worker-7d9f8c6b5", UID: "0b5e"}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &ts, FieldsType: "FieldsV1", FieldsV1: fields},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &ts, FieldsType: "FieldsV1", FieldsV1: fields, Subresource: "status"},
			},
		},
		Spec: corev1.PodSpec{
			NodeName:   fmt.Sprintf("node-%05d", i%benchNodes),
			Containers: []corev1.Container{c},
			Volumes: []corev1.Volume{{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}},
			}}}},
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
			},
			ServiceAccountName: "default", SchedulerName: "default-scheduler", RestartPolicy: corev1.RestartPolicyAlways,
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), HostIP: "192.168.0.1", StartTime: &ts,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: ts},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: ts},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: ts},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: ts},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "worker", Ready: true, RestartCount: 0, Image: c.Image,
				ImageID:     "registry.example.com/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				ContainerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ts}},
			}},
		},
	}
}

// benchObjects builds the fake clientset's content once per benchmark binary.
func benchClient(b *testing.B) *fake.Clientset {
	b.Helper()
	objs := make([]k8sruntime.Object, 0, benchNodes+benchPods)
	for i := range benchNodes {
		objs = append(objs, benchNode(i))
	}
	for i := range benchPods {
		objs = append(objs, benchPod(i))
	}
	// The plain object tracker: NewClientset's field-managed one would rewrite the managed
	// fields the benchmark sets itself.
	return fake.NewSimpleClientset(objs...)
}

func syncedCluster(b *testing.B, client *fake.Clientset, noTransform bool) *capacity.Cluster {
	b.Helper()
	c, err := capacity.New(capacity.Options{Client: client, NoTransform: noTransform})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.WaitForSync(ctx); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkFit is one fit query against 5,000 nodes and 150,000 pods held by the informers.
func BenchmarkFit(b *testing.B) {
	c := syncedCluster(b, benchClient(b), false)
	defer c.Close()
	tests := []struct {
		name string
		cons capacity.Constraints
	}{
		{name: "any-node"},
		{name: "node-selector", cons: capacity.Constraints{NodeSelector: map[string]string{"pool": "batch"}}},
		{name: "affinity+toleration", cons: capacity.Constraints{
			Required:    []capacity.NodeSelectorTerm{{MatchExpressions: []capacity.Requirement{{Key: "topology.kubernetes.io/zone", Operator: capacity.OpIn, Values: []string{"zone-0", "zone-1"}}}}},
			Tolerations: []capacity.Toleration{{Key: "dedicated", Operator: "Exists"}},
		}},
	}
	fp := capacity.Footprint{MilliCPU: 500, Memory: 512 << 20}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			want := -1
			runtime.GC() // the sync's garbage is not the query's
			cpu0 := cpuTime()
			for b.Loop() {
				got := c.Fit(fp, tc.cons, capacity.Resources{})
				if want >= 0 && got != want {
					b.Fatalf("Fit changed: %d then %d", want, got)
				}
				want = got
			}
			// CPU time per query as well as wall time: on a shared machine the wall time
			// includes waiting for a core.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(want), "pods-fit")
		})
	}
}

// BenchmarkCacheMemory measures the heap the caches hold for 5,000 nodes and 150,000 pods,
// with the transform (production) and without it (whole objects), as live heap after GC
// minus the heap before the cluster started (the fake clientset's own copy is in both).
func BenchmarkCacheMemory(b *testing.B) {
	client := benchClient(b)
	for _, tc := range []struct {
		name        string
		noTransform bool
	}{{"transform", false}, {"whole-objects", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var heap uint64
			for b.Loop() {
				before := liveHeap()
				c := syncedCluster(b, client, tc.noTransform)
				after := liveHeap()
				runtime.KeepAlive(c)
				c.Close()
				heap = after - before
			}
			b.ReportMetric(float64(heap)/(1<<20), "MiB-heap")
			b.ReportMetric(float64(heap)/benchPods, "B/pod")
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkTargets is what one planner pass asks of the caches for 1,000 Deployments of one
// namespace, 10 pods each (plus 7,500 pods of other workloads there): every target's state
// and its pods. One op is all 1,000 lookups.
func BenchmarkTargets(b *testing.B) {
	const targets, perTarget = 1000, 10
	objs := make([]k8sruntime.Object, 0, benchNodes+targets*(perTarget+1))
	for i := range benchNodes {
		objs = append(objs, benchNode(i))
	}
	for i := range benchPods / 20 { // one namespace's share of the other workloads
		p := benchPod(i * 20)
		p.Namespace = "fleet"
		objs = append(objs, p)
	}
	for t := range targets {
		name := fmt.Sprintf("loader-%04d", t)
		labels := map[string]string{"app": name, "team": "crawl"}
		one := int32(perTarget)
		objs = append(objs, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "fleet"},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: benchPod(0).Spec}},
		})
		for i := range perTarget {
			p := benchPod(benchPods + t*perTarget + i)
			p.Namespace, p.Name, p.Labels = "fleet", fmt.Sprintf("%s-%d", name, i), labels
			objs = append(objs, p)
		}
	}
	c := syncedCluster(b, fake.NewSimpleClientset(objs...), false)
	defer c.Close()
	refs := make([]capacity.TargetRef, targets)
	for t := range refs {
		refs[t] = capacity.TargetRef{Namespace: "fleet", Kind: "Deployment", Name: fmt.Sprintf("loader-%04d", t)}
	}
	runtime.GC()
	cpu0 := cpuTime()
	for b.Loop() {
		for _, ref := range refs {
			st, err := c.Target(context.Background(), ref)
			if err != nil {
				b.Fatal(err)
			}
			if len(st.Pods) != perTarget {
				b.Fatalf("%s: %d pods, want %d", ref.Name, len(st.Pods), perTarget)
			}
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
