package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KWOKNodeAnnotation marks the nodes the lab's KWOK controller manages.
const KWOKNodeAnnotation = "kwok.x-k8s.io/node"

// KubeOptions configures StartKube. The zero value starts etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and KWOK in a temporary directory.
type KubeOptions struct {
	// Dir holds PKI, configuration and logs; "" means a new temporary directory, removed by
	// Stop.
	Dir string
	// NoScheduler and NoControllerManager leave those components out.
	NoScheduler         bool
	NoControllerManager bool
	// NoKWOK leaves out the KWOK controller; AddNode then fails, as nothing makes nodes Ready.
	NoKWOK bool
	// MetricsServer also runs a metrics-server that scrapes KWOK's emulated kubelets and
	// serves metrics.k8s.io through the aggregation layer.
	MetricsServer bool
	// HPASyncPeriod is the controller manager's HPA sync period; 0 means 2s (the upstream
	// default is 15s).
	HPASyncPeriod time.Duration
}

// Kube is a running loopback control plane.
type Kube struct {
	// Dir holds the PKI, the kubeconfig and one log file per component.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig (system:masters).
	Kubeconfig string
	// APIServerURL is https://127.0.0.1:PORT.
	APIServerURL string
	// PKI holds the CA (also the client and request-header CA), the front-proxy client
	// certificate and the admin client certificate, for components started against this
	// control plane (KEDA, metrics adapters).
	PKI *PKI
	// KWOKAddress is host:port of KWOK's server, which emulates every fake node's kubelet
	// endpoints (/metrics/nodes/NODE/metrics/resource).
	KWOKAddress string
	// MetricsServerPort is the port metrics-server listens on, 0 when not started.
	MetricsServerPort int

	opts       KubeOptions
	ownDir     bool
	group      Group
	mu         sync.Mutex
	apiserver  *Process
	apiArgs    []string
	apiBin     string
	config     *rest.Config
	client     kubernetes.Interface
	stopOnce   sync.Once
	etcdDataLn string
}

// StartKube starts a control plane and waits until it serves and the default ServiceAccount
// exists (with the controller manager). Missing binaries give an error wrapping
// ErrUnavailable; build them with `go run ./internal/cmd/labbuild`.
func StartKube(ctx context.Context, opts KubeOptions) (*Kube, error) {
	return retryPorts(func() (*Kube, error) {
		if opts.Dir != "" {
			// etcd's data of a failed attempt records its old peer URL.
			if err := os.RemoveAll(filepath.Join(opts.Dir, "etcd")); err != nil {
				return nil, fmt.Errorf("start kube: %w", err)
			}
		}
		return startKube(ctx, opts)
	})
}

func startKube(ctx context.Context, opts KubeOptions) (k *Kube, err error) {
	if opts.MetricsServer && opts.NoKWOK {
		return nil, errors.New("start kube: metrics-server needs KWOK's emulated kubelets (NoKWOK is set)")
	}
	names := []string{"etcd", "kube-apiserver"}
	if !opts.NoKWOK {
		names = append(names, "kwok")
	}
	if !opts.NoControllerManager {
		names = append(names, "kube-controller-manager")
	}
	if !opts.NoScheduler {
		names = append(names, "kube-scheduler")
	}
	if opts.MetricsServer {
		names = append(names, "metrics-server")
	}
	bins := map[string]string{}
	for _, n := range names {
		p, err := Binary(n)
		if err != nil {
			return nil, err
		}
		bins[n] = p
	}
	var kwokConfig string
	if !opts.NoKWOK {
		if kwokConfig, err = KWOKConfig(ctx); err != nil {
			return nil, err
		}
	}

	k = &Kube{Dir: opts.Dir, opts: opts}
	if k.Dir == "" {
		if k.Dir, err = os.MkdirTemp("", "headroom-kube-"); err != nil {
			return nil, fmt.Errorf("start kube: %w", err)
		}
		k.ownDir = true
	}
	started := k // a failed start returns nil, which the deferred call must not stop
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	if err := os.MkdirAll(filepath.Join(k.Dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("start kube: %w", err)
	}
	if k.PKI, err = NewPKI(filepath.Join(k.Dir, "pki")); err != nil {
		return nil, fmt.Errorf("start kube: %w", err)
	}

	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	etcdPort, etcdPeer, etcdMetrics, apiPort, cmPort, schedPort, kwokPort, msPort :=
		ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7]
	k.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	k.KWOKAddress = "127.0.0.1:" + strconv.Itoa(kwokPort)
	if err := k.writeKubeconfig(); err != nil {
		return nil, err
	}

	// etcd: loopback only; data on tmpfs when there is one, and no fsync: this is throwaway state.
	dataDir := filepath.Join(k.Dir, "etcd")
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() && writable("/dev/shm") {
		if dataDir, err = os.MkdirTemp("/dev/shm", "headroom-etcd-"); err != nil {
			return nil, fmt.Errorf("start etcd: %w", err)
		}
		k.etcdDataLn = dataDir
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := k.start(ctx, "etcd", bins["etcd"], []string{
		"--name", "lab", "--data-dir", dataDir,
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "lab=" + peerURL, "--initial-cluster-state", "new",
		"--listen-metrics-urls", "http://127.0.0.1:" + strconv.Itoa(etcdMetrics),
		"--log-level", "warn", "--unsafe-no-fsync",
	}, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return nil, err
	}

	p := k.PKI
	k.apiBin = bins["kube-apiserver"]
	k.apiArgs = []string{
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(apiPort),
		"--tls-cert-file", p.APIServerCert, "--tls-private-key-file", p.APIServerKey,
		"--client-ca-file", p.CACert,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.ServiceAccountPub, "--service-account-signing-key-file", p.ServiceAccountKey,
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--authorization-mode", "RBAC",
		"--requestheader-client-ca-file", p.CACert, "--requestheader-allowed-names", FrontProxyClientName,
		"--requestheader-username-headers", "X-Remote-User", "--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", p.FrontProxyCert, "--proxy-client-key-file", p.FrontProxyKey,
		"--endpoint-reconciler-type", "none",
		"--profiling=false", "--v", "1",
	}
	if err := k.startAPIServer(ctx); err != nil {
		return nil, err
	}

	if !opts.NoControllerManager {
		hpa := opts.HPASyncPeriod
		if hpa <= 0 {
			hpa = 2 * time.Second
		}
		if err := k.start(ctx, "kube-controller-manager", bins["kube-controller-manager"], []string{
			"--kubeconfig", k.Kubeconfig, "--authentication-kubeconfig", k.Kubeconfig, "--authorization-kubeconfig", k.Kubeconfig,
			"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(cmPort),
			"--service-account-private-key-file", p.ServiceAccountKey, "--root-ca-file", p.CACert,
			"--use-service-account-credentials=false", "--leader-elect=false",
			"--horizontal-pod-autoscaler-sync-period", hpa.String(),
			"--profiling=false", "--v", "1",
		}, "https://127.0.0.1:"+strconv.Itoa(cmPort)+"/healthz", nil, 60*time.Second); err != nil {
			return nil, err
		}
	}
	if !opts.NoScheduler {
		if err := k.start(ctx, "kube-scheduler", bins["kube-scheduler"], []string{
			"--kubeconfig", k.Kubeconfig, "--authentication-kubeconfig", k.Kubeconfig, "--authorization-kubeconfig", k.Kubeconfig,
			"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(schedPort),
			"--leader-elect=false", "--profiling=false", "--v", "1",
		}, "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", nil, 60*time.Second); err != nil {
			return nil, err
		}
	}
	// KWOK: manages only annotated nodes; pod IPs come from a loopback range so that pod
	// identities can be real TCP source addresses. The 40 s node lease matches kwokctl and
	// keeps the node-lifecycle controller from marking fake nodes NotReady.
	if opts.NoKWOK {
		// no fake kubelets
	} else if err := k.start(ctx, "kwok", bins["kwok"], []string{
		"--config", kwokConfig, "--kubeconfig", k.Kubeconfig,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=" + KWOKNodeAnnotation + "=fake",
		"--node-lease-duration-seconds=40", "--cidr=127.16.0.0/16", "--node-ip=127.0.0.1",
		"--server-address=" + k.KWOKAddress,
	}, "http://"+k.KWOKAddress+"/healthz", nil, 60*time.Second); err != nil {
		return nil, err
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	k.config = cfg
	if k.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kube client: %w", err)
	}
	if !opts.NoControllerManager {
		if err := WaitFor(ctx, "default service account", 60*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
			_, err := k.client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			return err
		}); err != nil {
			return nil, err
		}
	}
	if opts.MetricsServer {
		k.MetricsServerPort = msPort
		if err := k.startMetricsServer(ctx, bins["metrics-server"]); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

func (k *Kube) writeKubeconfig() error {
	ca, err := os.ReadFile(k.PKI.CACert)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(k.PKI.AdminCert)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(k.PKI.AdminKey)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: k.APIServerURL, CertificateAuthorityData: ca}
	cfg.AuthInfos["lab-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "lab-admin"}
	cfg.CurrentContext = "lab"
	k.Kubeconfig = filepath.Join(k.Dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, k.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// adminHTTP is an HTTP client that trusts the lab CA and presents the admin certificate; with
// insecure it skips server verification (component health endpoints use self-signed certs).
func (k *Kube) adminHTTP(insecure bool) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(k.PKI.AdminCert, k.PKI.AdminKey)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(k.PKI.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, InsecureSkipVerify: insecure, //nolint:gosec // loopback health checks of self-signed components
	}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

// start runs a component, adds it to the stop group and waits until url answers 200.
func (k *Kube) start(ctx context.Context, name, bin string, args []string, url string, env []string, timeout time.Duration) error {
	p, err := k.spawn(name, bin, args, env)
	if err != nil {
		return err
	}
	return k.waitHealthy(ctx, p, url, timeout)
}

func (k *Kube) spawn(name, bin string, args []string, env []string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = k.Dir
	cmd.Env = append(os.Environ(), env...)
	p, err := Start(name, cmd, filepath.Join(k.Dir, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	k.group.Add(p)
	return p, nil
}

func (k *Kube) waitHealthy(ctx context.Context, p *Process, url string, timeout time.Duration) error {
	hc := http.DefaultClient
	if strings.HasPrefix(url, "https://") {
		var err error
		if hc, err = k.adminHTTP(!strings.HasPrefix(url, k.APIServerURL)); err != nil {
			return fmt.Errorf("start %s: %w", p.Name, err)
		}
		defer hc.CloseIdleConnections()
	}
	err := waitHTTP(ctx, p, hc, url, timeout)
	if err != nil {
		return fmt.Errorf("start %s: %w\n%s", p.Name, err, p.Tail(3000))
	}
	return nil
}

func (k *Kube) startAPIServer(ctx context.Context) error {
	p, err := k.spawn("kube-apiserver", k.apiBin, k.apiArgs, nil)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.apiserver = p
	k.mu.Unlock()
	return k.waitHealthy(ctx, p, k.APIServerURL+"/readyz", 120*time.Second)
}

// RestartAPIServer stops kube-apiserver (SIGTERM) and starts it again on the same port and
// etcd, waiting until it is ready. Clients see their connections and watches break.
func (k *Kube) RestartAPIServer(ctx context.Context) error {
	k.mu.Lock()
	p := k.apiserver
	k.mu.Unlock()
	if p != nil {
		if err := p.Stop(5 * time.Second); err != nil {
			return fmt.Errorf("stop kube-apiserver: %w", err)
		}
	}
	return k.startAPIServer(ctx)
}

// AddProcess puts a process started against this control plane into its stop group: Stop
// stops it before the control plane, in reverse start order.
func (k *Kube) AddProcess(p *Process) { k.group.Add(p) }

// LogPath is where a component started with AddProcess should write its log.
func (k *Kube) LogPath(name string) string { return filepath.Join(k.Dir, "logs", name+".log") }

// RESTConfig returns a copy of the admin client configuration.
func (k *Kube) RESTConfig() *rest.Config { return rest.CopyConfig(k.config) }

// Client returns an admin clientset.
func (k *Kube) Client() kubernetes.Interface { return k.client }

// Stop stops every process in reverse start order, then removes the etcd data and, when
// StartKube made it, the directory. It is safe to call more than once.
func (k *Kube) Stop() {
	k.stopOnce.Do(func() {
		k.group.Stop(15 * time.Second)
		if k.etcdDataLn != "" {
			os.RemoveAll(k.etcdDataLn)
		}
		if k.ownDir && os.Getenv("HEADROOM_KEEP_LAB") == "" {
			os.RemoveAll(k.Dir)
		}
	})
}

// NodeSpec describes a KWOK-managed fake node for AddNode.
type NodeSpec struct {
	Name string
	// CPU and Memory are resource quantities ("4", "8Gi"); both are the node's capacity and
	// allocatable.
	CPU, Memory string
	// Pods is the pod capacity; 0 means 110.
	Pods          int
	Labels        map[string]string
	Taints        []corev1.Taint
	Unschedulable bool
}

// AddNode creates a fake node that KWOK keeps Ready (it fails without KWOK) and waits until it is Ready without the
// not-ready taint, so that the scheduler can use it at once.
func (k *Kube) AddNode(ctx context.Context, spec NodeSpec) error {
	cpu, err := resource.ParseQuantity(spec.CPU)
	if err != nil {
		return fmt.Errorf("node %q: cpu %q: %w", spec.Name, spec.CPU, err)
	}
	mem, err := resource.ParseQuantity(spec.Memory)
	if err != nil {
		return fmt.Errorf("node %q: memory %q: %w", spec.Name, spec.Memory, err)
	}
	if spec.Name == "" {
		return errors.New("add node: empty name")
	}
	pods := spec.Pods
	if pods == 0 {
		pods = 110
	}
	if pods < 0 {
		return fmt.Errorf("node %q: pods %d is negative", spec.Name, pods)
	}
	labels := map[string]string{
		"kubernetes.io/hostname": spec.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok",
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem,
		corev1.ResourcePods: *resource.NewQuantity(int64(pods), resource.DecimalSI),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   spec.Name,
			Labels: labels,
			Annotations: map[string]string{
				KWOKNodeAnnotation:                     "fake",
				"node.alpha.kubernetes.io/ttl":         "0",
				"metrics.k8s.io/resource-metrics-path": "/metrics/nodes/" + spec.Name + "/metrics/resource",
			},
		},
		Spec:   corev1.NodeSpec{Taints: spec.Taints, Unschedulable: spec.Unschedulable},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
	}
	if _, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node %q: %w", spec.Name, err)
	}
	return WaitFor(ctx, "node "+spec.Name+" ready", 30*time.Second, 100*time.Millisecond, func(ctx context.Context) error {
		n, err := k.client.CoreV1().Nodes().Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return errors.New("not Ready")
		}
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady {
				return errors.New("still tainted not-ready")
			}
		}
		return nil
	})
}

// startMetricsServer runs metrics-server against KWOK's emulated kubelets and registers it as
// the metrics.k8s.io APIService, through an ExternalName Service so that no endpoints or
// kube-proxy are needed.
func (k *Kube) startMetricsServer(ctx context.Context, bin string) error {
	port := strconv.Itoa(k.MetricsServerPort)
	kwokPort := k.KWOKAddress[strings.LastIndexByte(k.KWOKAddress, ':')+1:]
	if _, err := k.spawn("metrics-server", bin, []string{
		"--kubeconfig", k.Kubeconfig, "--authentication-kubeconfig", k.Kubeconfig, "--authorization-kubeconfig", k.Kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", port,
		"--tls-cert-file", k.PKI.APIServerCert, "--tls-private-key-file", k.PKI.APIServerKey,
		"--kubelet-insecure-tls", "--kubelet-port", kwokPort, "--kubelet-preferred-address-types", "InternalIP",
		"--metric-resolution", "10s", "--kubelet-request-timeout", "5s", "--v", "1",
	}, nil); err != nil {
		return err
	}
	if err := k.RegisterAPIService(ctx, "metrics-server", "kube-system", "metrics.k8s.io", "v1beta1", k.MetricsServerPort); err != nil {
		return err
	}
	// Serving is enough; node metrics appear once metrics-server has scraped twice.
	return WaitFor(ctx, "metrics.k8s.io", 90*time.Second, 500*time.Millisecond, func(ctx context.Context) error {
		return k.client.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").Do(ctx).Error()
	})
}

// RegisterAPIService makes an aggregated API (group/version) served on 127.0.0.1:port
// reachable through the API server: an ExternalName Service pointing at localhost and an
// APIService that skips TLS verification of the loopback server.
func (k *Kube) RegisterAPIService(ctx context.Context, service, namespace, group, version string, port int) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}},
		},
	}
	if _, err := k.client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service %s/%s: %w", namespace, service, err)
	}
	dyn, err := dynamic.NewForConfig(k.config)
	if err != nil {
		return err
	}
	apisvc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": version + "." + group},
		"spec": map[string]any{
			"service":               map[string]any{"name": service, "namespace": namespace, "port": int64(port)},
			"group":                 group,
			"version":               version,
			"insecureSkipTLSVerify": true,
			"groupPriorityMinimum":  int64(100),
			"versionPriority":       int64(100),
		},
	}}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	if _, err := dyn.Resource(gvr).Create(ctx, apisvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create apiservice %s.%s: %w", version, group, err)
	}
	return nil
}
