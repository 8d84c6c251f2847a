package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
	"github.com/librarymesh/controlplane/registry/autoregister"
)

// The VM of the istioctl onboarding test: its WorkloadGroup and service
// account in kubeNS, its own address, and the address the hosts file
// istioctl writes gives istiod.istio-system.svc (the gateway a real VM
// would dial; here serve's TLS port itself, on Istio's port 15012).
const (
	vmGroup     = "echo-vm"
	vmAccount   = "vm"
	vmIP        = "127.0.0.3"
	vmGatewayIP = "127.0.0.5"
	vmPort      = 7070 // the group's port, which its probe checks on the VM's IP
)

// TestIstioctlVMOnboarding: a VM joins the way Istio's documentation joins
// one to istiod. `istioctl x workload entry configure` reads the
// WorkloadGroup, the mesh config ConfigMap istio (as deploy/ installs it),
// the root ConfigMap serve published and a TokenRequest token, and writes
// cluster.env, mesh.yaml, root-cert.pem, istio-token and hosts. They go where
// Istio's VM packages expect them, the hosts line into /etc/hosts, and Istio's
// istio-start.sh runs pilot-agent (proxyless: no Envoy, no iptables, set in
// sidecar.env). pilot-agent gets a certificate for the group's service
// account from our CA (the token checked with TokenReview), registers the
// VM (a WorkloadEntry from the group, because of --autoregister), proxies
// our xDS to a grpc-go client whose RPC reaches the echo backend, and runs
// the group's probe (copied into mesh.yaml): its reports set the entry's
// Healthy condition, True while the workload listens and False once it
// stops. When the VM stops, its WorkloadEntry goes after the grace period.
func TestIstioctlVMOnboarding(t *testing.T) {
	istioctl := e2e.Tool(t, "istioctl")
	e2e.Tool(t, "pilot-agent")
	startScript := e2e.Tool(t, "istio-start.sh")
	if !inNetworkAndMountNamespace(t) {
		return
	}
	defaultRoute(t)
	e := kubetest.New(t)
	for _, ns := range []string{"istio-system", kubeNS} {
		if _, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	applyConfigMap(t, e, "istio-system", filepath.Join(e2e.ModuleRoot(), "deploy/base/mesh-configmap.yaml"))
	srv := e2e.Serve(t, "--kubeconfig", e.KubeconfigPath, "--leader-elect=false",
		"--secure-grpc-addr", vmGatewayIP+":15012", "--auto-register-grace-period", "1s")
	root := caSecretRoot(t, e)
	backend := e2e.HealthBackend(t, backendServing)
	createEcho(t, e, backend)
	if _, err := e.Kube.CoreV1().ServiceAccounts(kubeNS).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: vmAccount}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wg := &networkingv1.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: kubeNS, Name: vmGroup},
		Spec: networkingapi.WorkloadGroup{Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": vmGroup}},
			Template: &networkingapi.WorkloadEntry{ServiceAccount: vmAccount, Ports: map[string]uint32{"grpc": vmPort}},
			Probe: &networkingapi.ReadinessProbe{PeriodSeconds: 1, FailureThreshold: 1,
				HealthCheckMethod: &networkingapi.ReadinessProbe_TcpSocket{TcpSocket: &networkingapi.TCPHealthCheckConfig{Port: vmPort}}}}}
	if _, err := e.Istio.NetworkingV1().WorkloadGroups(kubeNS).Create(t.Context(), wg, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create WorkloadGroup: %v", err)
	}
	waitRootPublished(t, e, kubeNS, root)

	files := istioctlConfigure(t, istioctl, e.KubeconfigPath, "--name", vmGroup, "--namespace", kubeNS, "--ingressIP", vmGatewayIP)
	if got := strings.TrimSpace(string(files["root-cert.pem"])); got != strings.TrimSpace(string(root)) {
		t.Errorf("istioctl's root-cert.pem is not our root:\n%s", got)
	}
	if got, want := string(files["hosts"]), vmGatewayIP+" istiod.istio-system.svc\n"; got != want {
		t.Errorf("istioctl's hosts = %q, want %q", got, want)
	}
	for _, want := range []string{"AUTO_REGISTER_GROUP: " + vmGroup, "discoveryAddress: istiod.istio-system.svc:15012", "SERVICE_ACCOUNT: " + vmAccount} {
		if !strings.Contains(string(files["mesh.yaml"]), want) {
			t.Errorf("istioctl's mesh.yaml lacks %q:\n%s", want, files["mesh.yaml"])
		}
	}

	// The same from a WorkloadGroup file, with the VMs' address taken from
	// the LoadBalancer Service of deploy/overlays/loadbalancer (its address
	// set as a cloud's load balancer controller would).
	lbAddressed(t, e, filepath.Join(e2e.ModuleRoot(), "deploy/overlays/loadbalancer/service-lb.yaml"), vmGatewayIP)
	wgFile := filepath.Join(t.TempDir(), "workloadgroup.yaml")
	wg.TypeMeta = metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "WorkloadGroup"}
	b, err := yaml.Marshal(wg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile := istioctlConfigure(t, istioctl, e.KubeconfigPath, "-f", wgFile, "--ingressService", "controlplane-external.istio-system")
	for name, content := range files {
		if name != "istio-token" && string(fromFile[name]) != string(content) {
			t.Errorf("istioctl -f %s --ingressService controlplane-external.istio-system wrote %s:\n%s\nwant, as from the cluster's WorkloadGroup:\n%s",
				filepath.Base(wgFile), name, fromFile[name], content)
		}
	}

	app, err := net.Listen("tcp", fmt.Sprintf("%s:%d", vmIP, vmPort)) // the VM's workload, for the probe
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	go acceptAll(app)
	begin := time.Now()
	vm := startIstioVM(t, startScript, files)
	certAfter := time.Since(begin)
	checkAgentCerts(t, vm.istioAgent, root, spiffeID(kubeNS, vmAccount))
	if n := e2e.Metric(t, srv.HTTPAddr, `controlplane_ca_certificates_issued_total{auth="kubernetes_token"}`); n != 1 {
		t.Errorf("certificates issued to a Kubernetes token (TokenReview): %v, want 1 (pilot-agent's first CSR with istioctl's token)", n)
	}
	t.Logf("pilot-agent's gRPC bootstrap:\n%s", vm.bootstrap(t))
	// pilot-agent opens its xDS stream upstream for the application's: the
	// registration lasts as long as the client's channel.
	cc := bootstrapClient(t, "xds:///"+echoTarget, podBootstrap(t, vm.istioAgent))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true), grpc.Peer(&p)); err != nil {
		t.Fatalf("RPC through the VM's pilot-agent: %v\n%s", err, srv.Logs())
	}
	if got := p.Addr.String(); got != fmt.Sprintf("127.0.0.1:%d", backend) {
		t.Errorf("reached %s, want the echo entry's endpoint 127.0.0.1:%d", got, backend)
	}
	rpcAfter := time.Since(begin)

	entry := autoregister.EntryName(vmGroup, vmIP, "")
	var we *networkingv1.WorkloadEntry
	e2e.Eventually(t, "WorkloadEntry "+entry+" registered by pilot-agent", 20*time.Second, func() bool {
		var err error
		we, err = e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), entry, metav1.GetOptions{})
		return err == nil
	})
	if we.Spec.Address != vmIP || we.Spec.ServiceAccount != vmAccount || we.Annotations[autoregister.AnnotationGroup] != vmGroup ||
		len(we.OwnerReferences) != 1 || we.OwnerReferences[0].Name != vmGroup {
		t.Errorf("WorkloadEntry %s: address %s, service account %s, annotations %v, owners %v; want %s, %s, group %s, owned by the group",
			entry, we.Spec.Address, we.Spec.ServiceAccount, we.Annotations, we.OwnerReferences, vmIP, vmAccount, vmGroup)
	}

	registeredAfter := time.Since(begin)
	// pilot-agent runs the group's probe (from mesh.yaml) and reports each
	// change over its xDS stream.
	waitEntryHealthy(t, e, entry, "True")
	healthyAfter := time.Since(begin)
	app.Close()
	closed := time.Now()
	waitEntryHealthy(t, e, entry, "False")
	unhealthyAfter := time.Since(closed)

	cc.Close()
	vm.stop()
	stopped := time.Now()
	e2e.Eventually(t, "WorkloadEntry "+entry+" deleted after the VM stopped", 20*time.Second, func() bool {
		_, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), entry, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	t.Logf("from istio-start.sh: certificate after %s, first RPC after %s, WorkloadEntry seen after %s, Healthy after %s; "+
		"not Healthy %s after the workload stopped (probe period 1s); deleted %s after the VM stopped (grace 1s)",
		certAfter.Round(time.Millisecond), rpcAfter.Round(time.Millisecond), registeredAfter.Round(time.Millisecond), healthyAfter.Round(time.Millisecond),
		unhealthyAfter.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
}

// applyConfigMap creates the ConfigMap in file (a manifest of deploy/) in
// ns, as `kubectl apply -k deploy/` would.
func applyConfigMap(t *testing.T, e *kubetest.Env, ns, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if _, err := e.Kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ConfigMap %s/%s from %s: %v", ns, cm.Name, file, err)
	}
}

// lbAddressed creates the Service in file (a manifest of deploy/) and
// gives it ip as its load balancer's address.
func lbAddressed(t *testing.T, e *kubetest.Env, file, ip string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := yaml.UnmarshalStrict(b, &svc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	svcs := e.Kube.CoreV1().Services(svc.Namespace)
	created, err := svcs.Create(t.Context(), &svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s/%s from %s: %v", svc.Namespace, svc.Name, file, err)
	}
	created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if _, err := svcs.UpdateStatus(t.Context(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set the load balancer address of Service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
}

// caSecretRoot waits until serve has stored its CA in istio-ca-secret and
// returns the root.
func caSecretRoot(t *testing.T, e *kubetest.Env) []byte {
	t.Helper()
	var root []byte
	e2e.Eventually(t, "the CA root in istio-ca-secret", 20*time.Second, func() bool {
		sec, err := e.Kube.CoreV1().Secrets("istio-system").Get(t.Context(), "istio-ca-secret", metav1.GetOptions{})
		if err == nil {
			root = sec.Data["root-cert.pem"]
		}
		return len(root) > 0
	})
	return root
}

// istioctlConfigure runs `istioctl x workload entry configure` for the
// VM group with args (which WorkloadGroup, how to find the gateway), as
// Istio's VM documentation does, and returns the files it wrote by name.
func istioctlConfigure(t *testing.T, istioctl, kubeconfig string, args ...string) map[string][]byte {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, istioctl, append([]string{"--kubeconfig", kubeconfig, "x", "workload", "entry", "configure",
		"-o", out, "--clusterID", "Kubernetes", "--internalIP", vmIP, "--autoregister"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("istioctl %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, b)
	}
	t.Logf("istioctl %s:\n%s", strings.Join(cmd.Args[1:], " "), b)
	files := map[string][]byte{}
	for _, name := range []string{"cluster.env", "mesh.yaml", "root-cert.pem", "istio-token", "hosts"} {
		if files[name], err = os.ReadFile(filepath.Join(out, name)); err != nil {
			t.Fatalf("istioctl did not write %s: %v", name, err)
		}
		if name != "istio-token" {
			t.Logf("%s:\n%s", name, files[name])
		}
	}
	return files
}

// istioVM is pilot-agent started by istio-start.sh in a folder that stands
// for the VM's /.
type istioVM struct {
	istioAgent
	stop func()
}

// startIstioVM installs istioctl's files where Istio's VM documentation
// puts them, under a folder standing for the VM's / (the hosts line goes
// into the real /etc/hosts of this mount namespace), writes the VM
// operator's sidecar.env for a proxyless workload, and runs Istio's
// istio-start.sh as the istio.service unit would. It returns once
// pilot-agent has written its certificate and gRPC bootstrap.
func startIstioVM(t *testing.T, startScript string, files map[string][]byte) istioVM {
	t.Helper()
	dir, err := os.MkdirTemp("", "vm-") // short: the XDS socket path must fit sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// sidecar.env is the operator's file of Istio's VM package (cluster.env,
	// read after it, stays istioctl's): no iptables, pilot-agent without
	// Envoy writing certificate files and a gRPC bootstrap for the
	// proxyless application, pilot-agent from the tools cache, run as the
	// user the test runs as.
	sidecarEnv := strings.Join([]string{
		"ISTIO_CUSTOM_IP_TABLES=true",
		"ISTIO_BIN_BASE=" + filepath.Dir(e2e.Tool(t, "pilot-agent")),
		"EXEC_USER=root",
		"DISABLE_ENVOY=true",
		"ISTIO_META_GENERATOR=grpc",
		"GRPC_XDS_BOOTSTRAP=" + filepath.Join(dir, "etc/istio/proxy/grpc-bootstrap.json"),
	}, "\n") + "\n"
	for path, content := range map[string][]byte{
		"etc/certs/root-cert.pem":            files["root-cert.pem"],
		"var/run/secrets/tokens/istio-token": files["istio-token"],
		"var/lib/istio/envoy/cluster.env":    files["cluster.env"],
		"etc/istio/config/mesh":              files["mesh.yaml"],
		"var/lib/istio/envoy/sidecar.env":    []byte(sidecarEnv),
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	appendHosts(t, dir, files["hosts"])

	cmd := exec.Command("bash", startScript)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "USER=root"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logPath := filepath.Join(dir, "istio-start.log")
	exited := runLogged(t, cmd, logPath)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// systemd stops the unit's whole control group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	t.Cleanup(stop)
	a := istioAgent{dir: dir, certs: "etc/certs"}
	a.waitFiles(t, exited, "VM "+vmGroup)
	return istioVM{istioAgent: a, stop: stop}
}

// appendHosts appends istioctl's hosts lines to /etc/hosts, as Istio's VM
// documentation does (`cat hosts >> /etc/hosts`): to a copy bind-mounted
// over /etc/hosts, which only this mount namespace sees.
func appendHosts(t *testing.T, dir string, lines []byte) {
	t.Helper()
	orig, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, append(orig, lines...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--bind", hosts, "/etc/hosts").CombinedOutput(); err != nil {
		t.Fatalf("bind-mount the VM's hosts file over /etc/hosts: %v\n%s", err, out)
	}
}

// bootstrapClient is a grpc-go channel to target through xDS with the
// given bootstrap (xDS credentials, plaintext when the config asks for
// none); the caller closes it.
func bootstrapClient(t *testing.T, target string, bootstrap []byte) *grpc.ClientConn {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// acceptAll accepts and closes connections until lis is closed.
func acceptAll(lis net.Listener) {
	for {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// waitEntryHealthy waits until WorkloadEntry kubeNS/name has the Healthy
// condition with status want and health checks enabled.
func waitEntryHealthy(t *testing.T, e *kubetest.Env, name, want string) {
	t.Helper()
	last := "not found"
	if !e2e.Poll(20*time.Second, 50*time.Millisecond, func() bool {
		we, err := e.Istio.NetworkingV1().WorkloadEntries(kubeNS).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		last = fmt.Sprintf("annotations %v, conditions %v", we.Annotations, we.Status.GetConditions())
		for _, c := range we.Status.GetConditions() {
			if c.GetType() == autoregister.ConditionHealthy && c.GetStatus() == want {
				return we.Annotations[autoregister.AnnotationHealthChecks] == "true"
			}
		}
		return false
	}) {
		t.Fatalf("WorkloadEntry %s did not get condition %s=%s within 20s: %s", name, autoregister.ConditionHealthy, want, last)
	}
}
