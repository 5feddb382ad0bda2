package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/headroom-autoscaler/headroom/internal/kubeyaml"
)

// kedaModule is KEDA's Go module; the operator, the metrics adapter and the CRDs all come from
// it at KEDAVersion.
const kedaModule = "github.com/kedacore/keda/v2"

// kedaBuildDir is the throwaway module (under CacheDir()/build) both KEDA binaries share.
const kedaBuildDir = "keda-" + KEDAVersion

// kedaAdapterDir is the package, inside the throwaway module, that holds the patched adapter.
const kedaAdapterDir = "cmd/adapter-loopback"

// kedaBuild is the recipe body for KEDA's operator ("operator") and metrics adapter
// ("adapter"). Both build in one throwaway module that copies KEDA's replace directives (the
// go tool ignores a dependency's replaces). The adapter's own Prometheus listener is
// hard-coded to all interfaces, so the adapter is built from a copy of KEDA's
// cmd/adapter/main.go that binds it to 127.0.0.1; the copy lives only in the cache.
func kedaBuild(target string) func(context.Context, string, io.Writer) error {
	return func(ctx context.Context, out string, log io.Writer) error {
		spec, err := kedaModuleSpec(ctx)
		if err != nil {
			return err
		}
		switch target {
		case "operator":
			spec.Package = kedaModule + "/cmd/operator"
		case "adapter":
			spec.Package = spec.Imports[1]
		default:
			return fmt.Errorf("unknown KEDA build target %q (want operator or adapter)", target)
		}
		return buildInModule(ctx, spec, out, log)
	}
}

// kedaModuleSpec prepares the throwaway module directory (the patched adapter source) and
// returns its spec.
func kedaModuleSpec(ctx context.Context) (ModuleSpec, error) {
	modFile, err := ModuleFile(ctx, kedaModule, KEDAVersion, "go.mod")
	if err != nil {
		return ModuleSpec{}, err
	}
	goVersion, replaces, err := readGoMod(modFile)
	if err != nil {
		return ModuleSpec{}, err
	}
	mainGo, err := ModuleFile(ctx, kedaModule, KEDAVersion, "cmd/adapter/main.go")
	if err != nil {
		return ModuleSpec{}, err
	}
	src, err := os.ReadFile(mainGo)
	if err != nil {
		return ModuleSpec{}, err
	}
	patched, err := patchKEDAAdapter(src)
	if err != nil {
		return ModuleSpec{}, err
	}
	dir := filepath.Join(CacheDir(), "build", kedaBuildDir, filepath.FromSlash(kedaAdapterDir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ModuleSpec{}, err
	}
	if prev, err := os.ReadFile(filepath.Join(dir, "main.go")); err != nil || !bytes.Equal(prev, patched) {
		if err := writeAtomic(filepath.Join(dir, "main.go"), patched); err != nil {
			return ModuleSpec{}, err
		}
	}
	modulePath := "lab/" + strings.NewReplacer(".", "_", "+", "_").Replace(kedaBuildDir)
	return ModuleSpec{
		Dir:     kedaBuildDir,
		Go:      goVersion,
		Require: []string{kedaModule + " " + KEDAVersion},
		Replace: replaces,
		Imports: []string{kedaModule + "/cmd/operator", modulePath + "/" + kedaAdapterDir},
		LDFlags: []string{
			"-X", kedaModule + "/version.Version=" + KEDAVersion,
			"-X", kedaModule + "/version.GitCommit=module-proxy",
		},
	}, nil
}

// kedaAdapterBind is the line of KEDA's cmd/adapter/main.go that binds the adapter's metrics
// listener on every interface, and its loopback replacement.
const (
	kedaAdapterBind         = `metricsBindAddress := fmt.Sprintf(":%v", metricsAPIServerPort)`
	kedaAdapterBindLoopback = `metricsBindAddress := fmt.Sprintf("127.0.0.1:%v", metricsAPIServerPort)`
)

// patchKEDAAdapter rewrites the adapter's metrics bind address to 127.0.0.1. It fails when
// the line is not there exactly once, so a KEDA upgrade that moves it cannot silently produce
// an adapter listening on every interface.
func patchKEDAAdapter(src []byte) ([]byte, error) {
	if n := bytes.Count(src, []byte(kedaAdapterBind)); n != 1 {
		return nil, fmt.Errorf("patch KEDA adapter: found %d occurrences of %q, want 1", n, kedaAdapterBind)
	}
	return bytes.Replace(src, []byte(kedaAdapterBind), []byte(kedaAdapterBindLoopback), 1), nil
}

// readGoMod returns the go directive and the replace directives ("old [v] => new [v]") of a
// go.mod file, single-line and block form.
func readGoMod(path string) (goVersion string, replaces []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	inBlock := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		fields := strings.Fields(line)
		switch {
		case len(fields) == 2 && fields[0] == "go":
			goVersion = fields[1]
		case line == "replace (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock && strings.Contains(line, "=>"):
			replaces = append(replaces, line)
		case len(fields) > 1 && fields[0] == "replace" && strings.Contains(line, "=>"):
			replaces = append(replaces, strings.TrimSpace(strings.TrimPrefix(line, "replace")))
		}
	}
	if err := sc.Err(); err != nil {
		return "", nil, fmt.Errorf("read %s: %w", path, err)
	}
	return goVersion, replaces, nil
}

// kedaCRDs are KEDA's CustomResourceDefinitions; the operator watches all of them and does not
// start without them.
var kedaCRDs = []string{
	"config/crd/bases/keda.sh_scaledobjects.yaml",
	"config/crd/bases/keda.sh_scaledjobs.yaml",
	"config/crd/bases/keda.sh_triggerauthentications.yaml",
	"config/crd/bases/keda.sh_clustertriggerauthentications.yaml",
	"config/crd/bases/eventing.keda.sh_cloudeventsources.yaml",
	"config/crd/bases/eventing.keda.sh_clustercloudeventsources.yaml",
}

func init() {
	for _, p := range kedaCRDs {
		if p != ScaledObjectCRD.Path {
			RegisterFile(ModuleFileRef{Module: kedaModule, Version: KEDAVersion, Path: p})
		}
	}
}

// KEDAOptions configures StartKEDA. The zero value runs KEDA's cluster objects in namespace
// "keda", watching every namespace, logging at info level.
type KEDAOptions struct {
	// Namespace is where KEDA keeps its own objects (KEDA_CLUSTER_OBJECT_NAMESPACE and
	// POD_NAMESPACE); "" means "keda".
	Namespace string
	// WatchNamespace limits the operator to one namespace; "" means every namespace.
	WatchNamespace string
	// LogLevel is the operator's and adapter's zap level ("debug", "info", "error"); "" means
	// "info".
	LogLevel string
}

// DefaultKEDANamespace is the namespace KEDA runs in when KEDAOptions.Namespace is empty.
const DefaultKEDANamespace = "keda"

const kedaStartTimeout = 2 * time.Minute

// KEDA is a running KEDA operator and metrics adapter (external.metrics.k8s.io), started as
// processes against a loopback control plane.
type KEDA struct {
	// Namespace holds KEDA's own objects.
	Namespace string
	// Operator and Adapter are the two processes; their logs are in the control plane's log
	// directory (keda-operator.log, keda-adapter.log).
	Operator, Adapter *Process
	// OperatorMetricsURL is the operator's Prometheus endpoint (it exports, among others,
	// keda_scaler_metrics_value and keda_scaler_errors_total).
	OperatorMetricsURL string
	// MetricsServiceAddr is the operator's gRPC metrics service that the adapter queries.
	MetricsServiceAddr string
	// AdapterPort serves external.metrics.k8s.io over HTTPS on 127.0.0.1.
	AdapterPort int
	// CertDir holds the operator's serving certificate (tls.crt, tls.key) and the CA
	// (ca.crt) that the operator and the adapter use for their mutual TLS.
	CertDir string
}

// StartKEDA installs KEDA's CRDs into kube, starts the operator and the metrics adapter with
// certificates issued by the control plane's CA (no cert rotation, no webhooks), registers
// external.metrics.k8s.io and waits until the operator is ready and the API is served. The
// processes join kube's stop group, so kube.Stop stops them too. Missing binaries give an
// error wrapping ErrUnavailable (build them with `go run ./internal/cmd/labbuild`).
func StartKEDA(ctx context.Context, kube *Kube, opts KEDAOptions) (*KEDA, error) {
	return retryPorts(func() (*KEDA, error) { return startKEDA(ctx, kube, opts) })
}

func startKEDA(ctx context.Context, kube *Kube, opts KEDAOptions) (k *KEDA, err error) {
	if kube == nil {
		return nil, errors.New("start keda: nil control plane")
	}
	ns := opts.Namespace
	if ns == "" {
		ns = DefaultKEDANamespace
	}
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return nil, fmt.Errorf("start keda: namespace %q: %s", ns, strings.Join(msgs, "; "))
	}
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	switch level {
	case "debug", "info", "error":
	default:
		return nil, fmt.Errorf("start keda: log level %q: want debug, info or error", level)
	}
	operatorBin, err := Binary("keda-operator")
	if err != nil {
		return nil, err
	}
	adapterBin, err := Binary("keda-adapter")
	if err != nil {
		return nil, err
	}
	if err := InstallKEDACRDs(ctx, kube); err != nil {
		return nil, err
	}
	client := kube.Client()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("start keda: create namespace %q: %w", ns, err)
	}

	k = &KEDA{Namespace: ns, CertDir: filepath.Join(kube.Dir, "keda-"+ns, "certs")}
	started := k // a failed start returns nil, which the deferred call must not stop
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	if err := k.writeCerts(kube.PKI); err != nil {
		return nil, fmt.Errorf("start keda: %w", err)
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, fmt.Errorf("start keda: %w", err)
	}
	metricsPort, probePort, grpcPort, adapterMetricsPort := ports[0], ports[1], ports[2], ports[4]
	k.AdapterPort = ports[3]
	k.OperatorMetricsURL = "http://127.0.0.1:" + strconv.Itoa(metricsPort) + "/metrics"
	k.MetricsServiceAddr = "127.0.0.1:" + strconv.Itoa(grpcPort)
	env := append(os.Environ(),
		"KEDA_CLUSTER_OBJECT_NAMESPACE="+ns, "POD_NAMESPACE="+ns, "WATCH_NAMESPACE="+opts.WatchNamespace,
		"KUBECONFIG="+kube.Kubeconfig)

	cmd := exec.Command(operatorBin,
		"--leader-elect=false", "--zap-log-level="+level, "--zap-encoder=console",
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort),
		"--metrics-service-bind-address="+k.MetricsServiceAddr,
		"--cert-dir="+k.CertDir, "--ca-dir="+filepath.Join(k.CertDir, "cas"),
		"--enable-cert-rotation=false", "--enable-webhook-patching=false", "--enable-apiservice-patching=false",
	)
	cmd.Dir, cmd.Env = kube.Dir, env
	if k.Operator, err = Start("keda-operator", cmd, kube.LogPath("keda-operator")); err != nil {
		return nil, err
	}
	kube.AddProcess(k.Operator)

	// --port is the adapter's own Prometheus listener, bound to 127.0.0.1 by the patched build.
	cmd = exec.Command(adapterBin,
		"--secure-port="+strconv.Itoa(k.AdapterPort), "--bind-address=127.0.0.1",
		"--cert-dir="+k.CertDir,
		"--tls-cert-file="+filepath.Join(k.CertDir, "tls.crt"),
		"--tls-private-key-file="+filepath.Join(k.CertDir, "tls.key"),
		"--lister-kubeconfig="+kube.Kubeconfig,
		"--authentication-kubeconfig="+kube.Kubeconfig, "--authorization-kubeconfig="+kube.Kubeconfig,
		"--metrics-service-address="+k.MetricsServiceAddr,
		"--port="+strconv.Itoa(adapterMetricsPort), "--zap-log-level="+level,
	)
	cmd.Dir, cmd.Env = kube.Dir, env
	if k.Adapter, err = Start("keda-adapter", cmd, kube.LogPath("keda-adapter")); err != nil {
		return nil, err
	}
	kube.AddProcess(k.Adapter)

	if err := kube.RegisterAPIService(ctx, "keda-metrics-apiserver", ns, "external.metrics.k8s.io", "v1beta1", k.AdapterPort); err != nil {
		return nil, fmt.Errorf("start keda: %w", err)
	}
	probe := "http://127.0.0.1:" + strconv.Itoa(probePort) + "/readyz"
	err = WaitFor(ctx, "keda", kedaStartTimeout, 200*time.Millisecond, func(ctx context.Context) error {
		for _, p := range []*Process{k.Operator, k.Adapter} {
			select {
			case <-p.Exited():
				return fmt.Errorf("%s exited: %w", p.Name, errExited)
			default:
			}
		}
		if err := getOK(ctx, http.DefaultClient, probe); err != nil {
			return fmt.Errorf("operator: %w", err)
		}
		return client.Discovery().RESTClient().Get().AbsPath("/apis/external.metrics.k8s.io/v1beta1").Do(ctx).Error()
	})
	if err != nil {
		return nil, fmt.Errorf("start keda: %w\noperator log:\n%s\nadapter log:\n%s", err, k.Operator.Tail(2000), k.Adapter.Tail(2000))
	}
	return k, nil
}

// Stop stops the adapter, then the operator. It is safe to call more than once, and on a
// partly started KEDA.
func (k *KEDA) Stop() {
	for _, p := range []*Process{k.Adapter, k.Operator} {
		if p != nil {
			_ = p.Stop(10 * time.Second)
		}
	}
}

// writeCerts issues the certificate the operator serves its gRPC metrics service with and
// the adapter presents as a client (KEDA reads tls.crt, tls.key and ca.crt from one
// directory), and a directory of CA bundles for --ca-dir.
func (k *KEDA) writeCerts(pki *PKI) error {
	if err := os.MkdirAll(filepath.Join(k.CertDir, "cas"), 0o700); err != nil {
		return err
	}
	name := "keda-" + k.Namespace
	svc := "keda-operator." + k.Namespace
	crt, key, err := pki.Issue(name, CertRequest{
		CommonName: "keda-operator", Server: true, Client: true,
		Hosts: []string{"127.0.0.1", "localhost", "keda-operator", svc, svc + ".svc", svc + ".svc.cluster.local"},
	})
	if err != nil {
		return err
	}
	for _, c := range []struct{ src, dst string }{
		{crt, "tls.crt"}, {key, "tls.key"}, {pki.CACert, "ca.crt"}, {pki.CACert, "cas/lab-ca.crt"},
	} {
		data, err := os.ReadFile(c.src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(k.CertDir, filepath.FromSlash(c.dst)), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// InstallKEDACRDs creates KEDA's CustomResourceDefinitions (from KEDA's module, cached) and
// waits until they are established. CRDs that already exist are left as they are.
func InstallKEDACRDs(ctx context.Context, kube *Kube) error {
	dyn, err := dynamic.NewForConfig(kube.RESTConfig())
	if err != nil {
		return fmt.Errorf("install keda crds: %w", err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	var names []string
	for _, path := range kedaCRDs {
		file, err := ModuleFileRef{Module: kedaModule, Version: KEDAVersion, Path: path}.Fetch(ctx)
		if err != nil {
			return fmt.Errorf("install keda crds: %w", err)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("install keda crds: %w", err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return fmt.Errorf("install keda crds: parse %s: %w", path, err)
		}
		if obj.GetKind() != "CustomResourceDefinition" || obj.GetName() == "" {
			return fmt.Errorf("install keda crds: %s is a %q named %q, want a CustomResourceDefinition", path, obj.GetKind(), obj.GetName())
		}
		if _, err := crds.Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("install keda crds: create %s: %w", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
	}
	return WaitFor(ctx, "keda crds established", 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		for _, n := range names {
			obj, err := crds.Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			established := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					established = true
				}
			}
			if !established {
				return fmt.Errorf("crd %s not established", n)
			}
		}
		return nil
	})
}

// ApplyYAML server-side applies every object of a multi-document YAML stream (Deployments,
// ScaledObjects, ...) as field manager "headroom-lab", taking ownership of conflicting fields.
// Objects without a namespace that need one go to "default". It returns the applied objects.
func ApplyYAML(ctx context.Context, kube *Kube, data []byte) ([]*unstructured.Unstructured, error) {
	cfg := kube.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Client().Discovery()))
	objs, err := kubeyaml.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	var out []*unstructured.Unstructured
	for i, obj := range objs {
		gvk := obj.GroupVersionKind()
		if gvk.Kind == "" || obj.GetName() == "" {
			return out, fmt.Errorf("apply: object %d: kind %q name %q: both are required", i+1, gvk.Kind, obj.GetName())
		}
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return out, fmt.Errorf("apply: %s %q: %w", gvk.Kind, obj.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if obj.GetNamespace() == "" {
				obj.SetNamespace(metav1.NamespaceDefault)
			}
			ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
		}
		body, err := obj.MarshalJSON()
		if err != nil {
			return out, fmt.Errorf("apply: %s %q: %w", gvk.Kind, obj.GetName(), err)
		}
		force := true
		got, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: "headroom-lab", Force: &force})
		if err != nil {
			return out, fmt.Errorf("apply: %s %q: %w", gvk.Kind, obj.GetName(), err)
		}
		out = append(out, got)
	}
	return out, nil
}
