package manifests

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/headroom-autoscaler/headroom/capacity"
	"github.com/headroom-autoscaler/headroom/internal/dashcheck"
	"github.com/headroom-autoscaler/headroom/internal/lab"
	"github.com/headroom-autoscaler/headroom/internal/lab/labtest"
	"github.com/headroom-autoscaler/headroom/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(labtest.Main(m)) }

// render renders dir or fails the test.
func render(t *testing.T, dir string) []Object {
	t.Helper()
	objs, _, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// find returns the one object of that kind and name.
func find(t *testing.T, objs []Object, kind, name string) Object {
	t.Helper()
	for _, o := range objs {
		if o.Kind() == kind && o.Name() == name {
			return o
		}
	}
	t.Fatalf("no %s %q among %d objects", kind, name, len(objs))
	return nil
}

// as converts a rendered object to a typed API object.
func as[T any](t *testing.T, o Object) *T {
	t.Helper()
	data, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s %s: %v", o.Kind(), o.Name(), err)
	}
	return v
}

func kinds(objs []Object) []string {
	var out []string
	for _, o := range objs {
		id := o.Kind() + " " + o.Name()
		if o.Namespace() != "" {
			id = o.Kind() + " " + o.Namespace() + "/" + o.Name()
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func TestRenderEveryDirectory(t *testing.T) {
	scaler := []string{
		"ClusterRole headroom", "ClusterRoleBinding headroom", "Deployment headroom/headroom",
		"Namespace headroom", "PodDisruptionBudget headroom/headroom", "Secret headroom/headroom-broker-credentials",
		"Service headroom/headroom", "ServiceAccount headroom/headroom",
	}
	monitoring := []string{"ConfigMap headroom/headroom-dashboard", "PrometheusRule headroom/headroom", "ServiceMonitor headroom/headroom"}
	production := append(append(append([]string{}, scaler...), monitoring...), "NetworkPolicy headroom/headroom")
	examples := []string{"Deployment jobs/loader", "Deployment jobs/worker", "Namespace jobs", "ScaledObject jobs/loader", "ScaledObject jobs/worker"}
	tests := []struct {
		dir  string
		want []string
	}{
		{dir: "base", want: scaler},
		{dir: "prometheus", want: []string{"PrometheusRule headroom/headroom", "ServiceMonitor headroom/headroom"}},
		{dir: "grafana", want: []string{"ConfigMap headroom/headroom-dashboard"}},
		{dir: "overlays/production", want: production},
		{dir: "overlays/tls", want: append(append([]string{}, production...),
			"ClusterTriggerAuthentication headroom-tls", "Secret headroom/headroom-tls", "Secret keda/headroom-keda-client-tls")},
		{dir: "examples", want: examples},
		{dir: "examples-tls", want: examples},
	}
	if len(tests) != len(Dirs) {
		t.Errorf("%d cases for %d directories in Dirs", len(tests), len(Dirs))
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			got := kinds(render(t, tc.dir))
			want := append([]string{}, tc.want...)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("objects:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func containerArgs(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(a, "=")
		out[k] = v
	}
	return out
}

func TestScalerDeployment(t *testing.T) {
	for _, dir := range []string{"base", "overlays/production", "overlays/tls"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			d := as[appsv1.Deployment](t, find(t, objs, "Deployment", "headroom"))
			pod := d.Spec.Template.Spec
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
			}
			if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 ||
				a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
				t.Errorf("affinity = %+v, want pod anti-affinity across kubernetes.io/hostname", pod.Affinity)
			}
			if pod.ServiceAccountName != "headroom" {
				t.Errorf("serviceAccountName = %q, want headroom", pod.ServiceAccountName)
			}
			if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("pod securityContext = %+v, want runAsNonRoot with a non-zero runAsUser", psc)
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			c := pod.Containers[0]
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("container securityContext = %+v, want read-only root, no privilege escalation, all capabilities dropped", sc)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("no %s request", r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Error("no memory limit")
			}
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if !reflect.DeepEqual(ports, map[string]int32{"grpc": 9090, "http": 8080}) {
				t.Errorf("container ports = %v, want grpc 9090 and http 8080", ports)
			}
			probes := []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{
				{name: "startup", probe: c.StartupProbe, path: "/healthz"},
				{name: "liveness", probe: c.LivenessProbe, path: "/healthz"},
				{name: "readiness", probe: c.ReadinessProbe, path: "/readyz"},
			}
			for _, p := range probes {
				if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
					t.Errorf("%s probe = %+v, want GET %s on port http", p.name, p.probe, p.path)
				}
			}
			args := containerArgs(c)
			if c.Args[0] != "serve" || args["--grpc-addr"] != ":9090" || args["--http-addr"] != ":8080" {
				t.Errorf("args = %q, want serve --grpc-addr=:9090 --http-addr=:8080 ...", c.Args)
			}
			// Every broker's credentials come from the Secret, under the names the scaler reads.
			secret := as[corev1.Secret](t, find(t, objs, "Secret", "headroom-broker-credentials"))
			if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != secret.Name {
				t.Errorf("envFrom = %+v, want Secret %s", c.EnvFrom, secret.Name)
			}
			brokers := 0
			for _, a := range c.Args {
				v, ok := strings.CutPrefix(a, "--broker=")
				if !ok {
					continue
				}
				brokers++
				name, _, _ := strings.Cut(v, "=")
				for _, suffix := range []string{"USERNAME", "PASSWORD"} {
					key := "HEADROOM_BROKER_" + strings.ToUpper(name) + "_" + suffix
					if _, ok := secret.StringData[key]; !ok {
						t.Errorf("broker %q: Secret %s has no %s", name, secret.Name, key)
					}
				}
			}
			if brokers == 0 {
				t.Error("no --broker flag")
			}
			// /tmp is the only writable path.
			if len(c.VolumeMounts) == 0 || c.VolumeMounts[0].MountPath != "/tmp" {
				t.Errorf("volumeMounts = %+v, want an emptyDir on /tmp first", c.VolumeMounts)
			}
			// The PDB and the Service select these pods.
			podLabels := labels.Set(d.Spec.Template.Labels)
			pdb := as[policyv1.PodDisruptionBudget](t, find(t, objs, "PodDisruptionBudget", "headroom"))
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 ||
				!labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
				t.Errorf("PDB = %+v, want minAvailable 1 selecting the scaler's pods", pdb.Spec)
			}
			svc := as[corev1.Service](t, find(t, objs, "Service", "headroom"))
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				t.Errorf("Service selector %v does not select pods labelled %v", svc.Spec.Selector, podLabels)
			}
			svcPorts := map[string]string{}
			for _, p := range svc.Spec.Ports {
				svcPorts[p.Name] = fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String())
			}
			if want := map[string]string{"grpc": "9090->grpc", "http-metrics": "8080->http"}; !reflect.DeepEqual(svcPorts, want) {
				t.Errorf("Service ports = %v, want %v", svcPorts, want)
			}
		})
	}
}

// TestRBACIsLeastPrivilege lists every permission the ClusterRole grants and compares it with
// what the scaler needs: reading what it decides from, patching pods (deletion cost) and
// writing events. Any other grant, and any missing one, fails.
func TestRBACIsLeastPrivilege(t *testing.T) {
	objs := render(t, "base")
	role := as[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", "headroom"))
	var got []string
	for _, r := range role.Rules {
		if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
			t.Errorf("rule %+v: resourceNames and nonResourceURLs are not expected", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					got = append(got, fmt.Sprintf("%s/%s %s", g, res, v))
				}
			}
		}
	}
	read := func(gr string) []string { return []string{gr + " get", gr + " list", gr + " watch"} }
	want := slices.Concat(
		read("/nodes"), read("/pods"), []string{"/pods patch"},
		read("apps/deployments"), read("apps/statefulsets"), read("apps/replicasets"),
		[]string{"*/*/scale get"},
		read("keda.sh/scaledobjects"),
		read("autoscaling/horizontalpodautoscalers"),
		[]string{"metrics.k8s.io/nodes get", "metrics.k8s.io/nodes list", "metrics.k8s.io/pods get", "metrics.k8s.io/pods list"},
		[]string{"/events create", "/events patch", "events.k8s.io/events create", "events.k8s.io/events patch"},
	)
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ClusterRole grants:\n got %q\nwant %q", got, want)
	}
	binding := as[rbacv1.ClusterRoleBinding](t, find(t, objs, "ClusterRoleBinding", "headroom"))
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: "headroom", Namespace: "headroom"}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject {
		t.Errorf("ClusterRoleBinding = %+v, want ClusterRole %s bound to %+v", binding, role.Name, wantSubject)
	}
}

func TestNetworkPolicyAdmitsOnlyKEDAToGRPC(t *testing.T) {
	objs := render(t, "overlays/production")
	np := as[networkingv1.NetworkPolicy](t, find(t, objs, "NetworkPolicy", "headroom"))
	d := as[appsv1.Deployment](t, find(t, objs, "Deployment", "headroom"))
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("podSelector %v does not select the scaler's pods", np.Spec.PodSelector)
	}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			switch p.Port.String() {
			case "grpc":
				if len(rule.From) != 1 || rule.From[0].PodSelector == nil ||
					rule.From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "keda-operator" ||
					rule.From[0].NamespaceSelector == nil {
					t.Errorf("grpc admitted from %+v, want only keda-operator pods in KEDA's namespace", rule.From)
				}
			case "http":
			default:
				t.Errorf("ingress on port %s: only grpc (KEDA) and http (metrics) are expected", p.Port.String())
			}
		}
	}
}

// scaledObject is the part of KEDA's ScaledObject the examples must get right.
type scaledObject struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Fallback        *struct {
			Behavior string `json:"behavior"`
		} `json:"fallback"`
		Triggers []struct {
			Type              string            `json:"type"`
			MetricType        string            `json:"metricType"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// TestExampleScaledObjects checks that each example makes the HPA apply the scaler's
// decision as it is, reaches the Service of the base, and carries metadata that the
// server's own parser accepts.
func TestExampleScaledObjects(t *testing.T) {
	base := render(t, "base")
	svc := find(t, base, "Service", "headroom")
	wantAddress := fmt.Sprintf("%s.%s.svc.cluster.local:9090", svc.Name(), svc.Namespace())
	d := as[appsv1.Deployment](t, find(t, base, "Deployment", "headroom"))
	var brokers []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--broker="); ok {
			name, _, _ := strings.Cut(v, "=")
			brokers = append(brokers, name)
		}
	}
	if got := containerArgs(d.Spec.Template.Spec.Containers[0])["--scaler-address"]; got != wantAddress {
		t.Errorf("scaler --scaler-address = %q, want %q (the address the examples dial)", got, wantAddress)
	}

	objs := render(t, "examples")
	for _, name := range []string{"loader", "worker"} {
		t.Run(name, func(t *testing.T) {
			so := as[scaledObject](t, find(t, objs, "ScaledObject", name))
			target := find(t, objs, "Deployment", so.Spec.ScaleTargetRef.Name)
			if target.Namespace() != so.Metadata.Namespace {
				t.Errorf("scale target %s is in namespace %q, ScaledObject in %q", target.Name(), target.Namespace(), so.Metadata.Namespace)
			}
			if so.Spec.MaxReplicaCount == nil || so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 0 {
				t.Fatalf("replica counts min %v max %v, want min 0 and a max", so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
			}
			if so.Spec.Fallback == nil || so.Spec.Fallback.Behavior != "currentReplicas" {
				t.Errorf("fallback = %+v, want behavior currentReplicas", so.Spec.Fallback)
			}
			// What the HPA makes of the answer (metricType, behavior) and the metadata: the
			// checks of `scaler check`, which operators run on their own ScaledObjects.
			findings, served := server.CheckScaledObject(capacity.ParseScaledObject(as[unstructured.Unstructured](t, find(t, objs, "ScaledObject", name))),
				server.CheckOptions{Brokers: brokers, Addresses: []string{wantAddress}})
			if served != 1 || len(findings) > 0 {
				t.Errorf("scaler check: %d triggers pointing at the scaler, findings %q; want 1 and none", served, findings)
			}
			if len(so.Spec.Triggers) != 1 {
				t.Fatalf("%d triggers, want 1", len(so.Spec.Triggers))
			}
			tr := so.Spec.Triggers[0]
			if tr.MetricType != "AverageValue" {
				t.Errorf("trigger metricType %q, want AverageValue written out (KEDA's default, but the example shows it)", tr.MetricType)
			}
			for _, k := range []string{"enableTLS", "unsafeSsl", "caCert", "tlsClientCert", "tlsClientKey"} {
				if _, ok := tr.Metadata[k]; ok {
					t.Errorf("metadata sets %s: TLS belongs in a TriggerAuthentication (see examples-tls)", k)
				}
			}
		})
	}
}

var authParamRe = regexp.MustCompile(`keda:"name=([A-Za-z]+), order=authParams`)

// TestTLSOverlay checks both ends of the TLS overlay: the scaler serves with a certificate,
// key and client CA from a mounted Secret, and KEDA's side hands its external scaler client
// exactly the authParams it reads (taken from KEDA's source in the module cache).
func TestTLSOverlay(t *testing.T) {
	objs := render(t, "overlays/tls")
	d := as[appsv1.Deployment](t, find(t, objs, "Deployment", "headroom"))
	pod := d.Spec.Template.Spec
	secret := as[corev1.Secret](t, find(t, objs, "Secret", "headroom-tls"))
	mounts := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	var tlsVolume string
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret.Name {
			tlsVolume = v.Name
		}
	}
	dir := mounts[tlsVolume]
	if tlsVolume == "" || dir == "" {
		t.Fatalf("Secret %s is not mounted (volumes %+v, mounts %v)", secret.Name, pod.Volumes, mounts)
	}
	args := containerArgs(pod.Containers[0])
	for flag, key := range map[string]string{"--tls-cert": "tls.crt", "--tls-key": "tls.key", "--tls-client-ca": "ca.crt"} {
		if args[flag] != dir+"/"+key {
			t.Errorf("%s = %q, want %s/%s", flag, args[flag], dir, key)
		}
		if _, ok := secret.StringData[key]; !ok {
			t.Errorf("Secret %s has no %s", secret.Name, key)
		}
	}

	src, err := lab.ModuleFile(t.Context(), "github.com/kedacore/keda/v2", "v2.21.0", "pkg/scalers/external_scaler.go")
	labtest.Check(t, "KEDA v2.21.0 source (go mod download)", err)
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	kedaReads := map[string]bool{}
	for _, m := range authParamRe.FindAllStringSubmatch(string(code), -1) {
		kedaReads[m[1]] = true
	}
	if len(kedaReads) == 0 {
		t.Fatalf("found no authParams in %s: has KEDA's metadata struct changed?", src)
	}
	cta := find(t, objs, "ClusterTriggerAuthentication", "headroom-tls")
	var spec struct {
		Spec struct {
			SecretTargetRef []struct{ Parameter, Name, Key string } `json:"secretTargetRef"`
		} `json:"spec"`
	}
	data, _ := json.Marshal(cta)
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	clientSecret := as[corev1.Secret](t, find(t, objs, "Secret", "headroom-keda-client-tls"))
	var params []string
	for _, r := range spec.Spec.SecretTargetRef {
		params = append(params, r.Parameter)
		if !kedaReads[r.Parameter] {
			t.Errorf("parameter %q: KEDA's external scaler reads only %v", r.Parameter, kedaReads)
		}
		if _, ok := clientSecret.StringData[r.Key]; r.Name != clientSecret.Name || !ok {
			t.Errorf("parameter %q reads %s/%s, which the Secret %s does not hold", r.Parameter, r.Name, r.Key, clientSecret.Name)
		}
	}
	sort.Strings(params)
	if want := []string{"caCert", "tlsClientCert", "tlsClientKey"}; !reflect.DeepEqual(params, want) {
		t.Errorf("parameters %q, want %q", params, want)
	}
	if clientSecret.Namespace != "keda" {
		t.Errorf("Secret %s in namespace %q: a ClusterTriggerAuthentication reads from KEDA's namespace (keda)", clientSecret.Name, clientSecret.Namespace)
	}

	for _, o := range render(t, "examples-tls") {
		if o.Kind() != "ScaledObject" {
			continue
		}
		so := as[scaledObject](t, o)
		for _, tr := range so.Spec.Triggers {
			if ref := tr.AuthenticationRef; ref == nil || ref.Name != cta.Name() || ref.Kind != "ClusterTriggerAuthentication" {
				t.Errorf("ScaledObject %s: authenticationRef %+v, want ClusterTriggerAuthentication %s", so.Metadata.Name, ref, cta.Name())
			}
		}
	}
}

func TestGrafanaConfigMapCarriesTheDashboard(t *testing.T) {
	cm := as[corev1.ConfigMap](t, find(t, render(t, "grafana"), "ConfigMap", "headroom-dashboard"))
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v, want grafana_dashboard: \"1\" for Grafana's sidecar", cm.Labels)
	}
	want, err := Files.ReadFile("grafana/headroom.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data["headroom.json"]; got != string(want) {
		t.Errorf("ConfigMap data differs from grafana/headroom.json (%d vs %d bytes)", len(got), len(want))
	}
}

func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	plain := loadRules(t)
	pr := find(t, render(t, "prometheus"), "PrometheusRule", "headroom")
	spec, err := json.Marshal(pr["spec"])
	if err != nil {
		t.Fatal(err)
	}
	got, err := dashcheck.LoadRules(spec)
	if err != nil {
		t.Fatalf("PrometheusRule spec: %v", err)
	}
	if !reflect.DeepEqual(got, plain) {
		t.Errorf("PrometheusRule groups differ from prometheus/headroom.rules.yml:\n got %+v\nwant %+v", got, plain)
	}
	sm := find(t, render(t, "prometheus"), "ServiceMonitor", "headroom")
	var smSpec struct {
		Spec struct {
			Selector  struct{ MatchLabels map[string]string } `json:"selector"`
			Endpoints []struct{ Port string }                 `json:"endpoints"`
		} `json:"spec"`
	}
	data, _ := json.Marshal(sm)
	if err := json.Unmarshal(data, &smSpec); err != nil {
		t.Fatal(err)
	}
	svc := as[corev1.Service](t, find(t, render(t, "base"), "Service", "headroom"))
	if !labels.SelectorFromSet(smSpec.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select Service labels %v", smSpec.Spec.Selector.MatchLabels, svc.Labels)
	}
	if len(smSpec.Spec.Endpoints) != 1 || smSpec.Spec.Endpoints[0].Port != "http-metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want port http-metrics", smSpec.Spec.Endpoints)
	}
}

func loadRules(t *testing.T) *dashcheck.RuleGroups {
	t.Helper()
	data, err := Files.ReadFile("prometheus/headroom.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := dashcheck.LoadRules(data)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func loadDashboard(t *testing.T) *dashcheck.Dashboard {
	t.Helper()
	data, err := Files.ReadFile("grafana/headroom.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := dashcheck.LoadDashboard(data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	for _, v := range []string{"datasource", "job", "namespace", "scaledobject"} {
		if _, ok := d.Variable(v); !ok {
			t.Errorf("no variable %q", v)
		}
	}
	// What the dashboard must show, each by a metric that a panel reads.
	panels := map[string]string{}
	for _, p := range d.AllPanels() {
		for _, tg := range p.Targets {
			panels[p.Title] += tg.Expr + "\n"
		}
	}
	tests := []struct {
		topic, metric string
	}{
		{topic: "desired replicas", metric: "headroom_desired_replicas"},
		{topic: "current replicas", metric: "headroom_current_replicas"},
		{topic: "ready replicas", metric: "headroom_ready_replicas"},
		{topic: "queue ready/unacked", metric: "headroom_queue_messages"},
		{topic: "fit", metric: "headroom_fit_replicas"},
		{topic: "share of headroom", metric: "headroom_share_replicas"},
		{topic: "limiting factor", metric: "headroom_limit{"},
		{topic: "HPA settings that hold the count back", metric: "headroom_hpa_warnings"},
		{topic: "node headroom", metric: "headroom_node_free"},
		{topic: "snapshot age", metric: "headroom_snapshot_age_seconds"},
		{topic: "broker errors", metric: "headroom_broker_errors_total"},
		{topic: "RPC latency", metric: "headroom_grpc_request_duration_seconds_bucket"},
	}
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			for _, exprs := range panels {
				if strings.Contains(exprs, tc.metric) {
					return
				}
			}
			t.Errorf("no panel reads %s", tc.metric)
		})
	}
}
