package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	cachedmemory "k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

// istiod as a peer (make bench-istiod): Istio's pilot-discovery, built
// from Go modules by hack/install-tools.sh --istiod, with its defaults
// except a high PILOT_MAX_REQUESTS_PER_SECOND (so the fleet connecting at
// once is not rate limited), fed the scenario through a real etcd and
// kube-apiserver, serving plaintext xDS on loopback to the same load
// client. What it would need a cluster for (the secure xDS and webhook
// ports, the injection template, the mesh ConfigMap) it runs without.

// ErrNoIstiod means pilot-discovery or Istio's CRDs were not found.
var ErrNoIstiod = errors.New("pilot-discovery not built (run hack/install-tools.sh --istiod, or make bench-istiod)")

// IstiodFiles returns pilot-discovery and istio-crds.yaml where
// hack/install-tools.sh --istiod leaves them: $CONTROLPLANE_TOOLS_BIN, or
// the cache folder it defaults to.
func IstiodFiles() (bin, crds string, err error) {
	dir := os.Getenv("CONTROLPLANE_TOOLS_BIN")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", "", fmt.Errorf("find cache folder: %w", err)
		}
		dir = filepath.Join(cache, "controlplane", "bin")
	}
	bin, crds = filepath.Join(dir, "pilot-discovery"), filepath.Join(dir, "istio-crds.yaml")
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		return "", "", fmt.Errorf("%w: no executable %s", ErrNoIstiod, bin)
	}
	if _, err := os.Stat(crds); err != nil {
		return "", "", fmt.Errorf("%w: no %s", ErrNoIstiod, crds)
	}
	return bin, crds, nil
}

// istiodMaxRequests is PILOT_MAX_REQUESTS_PER_SECOND: istiod's default
// (derived from the machine's size) would pace the fleet's connections.
const istiodMaxRequests = "100000"

// startIstiod starts etcd and kube-apiserver with Istio's CRDs, creates
// the mesh's objects through the API server, points m's changes at it,
// starts pilot-discovery on it and waits until istiod is ready and has
// settled (every ServiceEntry without addresses got one from its
// allocator). The returned func stops istiod, then the API server.
func startIstiod(ctx context.Context, cfg Config, base string, m *mesh) (*process, func(), error) {
	// The folder's Services have cluster IPs in 10.96.0.0/16.
	env, err := kubetest.StartWithCRDs(map[string]string{"service-cluster-ip-range": "10.64.0.0/10"}, cfg.IstiodCRDs)
	stopKube := func() { _ = env.Stop() } // best effort: a failed stop leaves only temporary files
	if err != nil {
		stopKube()
		return nil, nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "istiod: etcd and kube-apiserver with Istio's CRDs up in %s\n", env.StartDuration.Round(time.Millisecond))
	begin := time.Now()
	n, err := createFolder(ctx, env.Config, m.dir)
	if err != nil {
		stopKube()
		return nil, nil, err
	}
	fmt.Fprintf(cfg.Progress, "istiod: created %d objects through the API server in %.1fs\n", n, time.Since(begin).Seconds())
	a, err := newApplier(env.Config)
	if err != nil {
		stopKube()
		return nil, nil, err
	}
	m.apply = func(yaml []byte) error { return a.apply(ctx, yaml) }

	addrs, err := freeLoopbackAddrs(3)
	if err != nil {
		stopKube()
		return nil, nil, err
	}
	grpcAddr, httpAddr, monitoringAddr := addrs[0], addrs[1], addrs[2]
	args := []string{"discovery",
		"--kubeconfig", env.KubeconfigPath,
		"--grpcAddr", grpcAddr, "--httpAddr", httpAddr, "--monitoringAddr", monitoringAddr,
		// No secure xDS (the load client speaks plaintext) and the webhooks,
		// which no API server calls here, on the HTTP port.
		"--secureGRPCAddr", "", "--httpsAddr", "",
		// No mesh or networks files: the defaults (and a ConfigMap istio
		// in istio-system, which there is not).
		"--meshConfig", filepath.Join(base, "no-mesh-config"), "--networksConfig", filepath.Join(base, "no-mesh-networks"),
		"--shutdownDuration", "1s",
	}
	l := cfg.launch()
	l.dir = base
	l.env = []string{"POD_NAME=istiod-loadtest", "POD_NAMESPACE=istio-system", "PILOT_MAX_REQUESTS_PER_SECOND=" + istiodMaxRequests}
	p, _, err := spawn(cfg.IstiodBin, args, filepath.Join(base, "server.log"), l)
	if err != nil {
		stopKube()
		return nil, nil, err
	}
	stop := func() { p.stop(); stopKube() }
	p.grpcAddr, p.httpAddr = grpcAddr, monitoringAddr // httpAddr serves /metrics
	if err := p.waitReady(ctx, "http://"+httpAddr+"/ready"); err != nil {
		stop()
		return nil, nil, err
	}
	p.startup = time.Since(p.started)
	fmt.Fprintf(cfg.Progress, "istiod: exec to /ready 200 in %.3fs\n", p.startup.Seconds())
	begin = time.Now()
	if err := waitAllocated(ctx, a.dyn, cfg.Timeout); err != nil {
		stop()
		return nil, nil, fmt.Errorf("istiod: %w\n%s", err, p.logTail())
	}
	// The allocations are ServiceEntry updates: let istiod push them
	// (its debounce is 100 ms, pushes take longer at scale) before the
	// fleet connects.
	time.Sleep(2 * time.Second)
	fmt.Fprintf(cfg.Progress, "istiod: settled (every ServiceEntry without addresses allocated one) in %.1fs\n", time.Since(begin).Seconds())
	return p, stop, nil
}

// freeLoopbackAddrs returns n loopback addresses whose ports were free a
// moment ago (pilot-discovery does not say which port it got for :0).
func freeLoopbackAddrs(n int) ([]string, error) {
	var out []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// serviceEntries is the ServiceEntry resource.
var serviceEntries = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}

// waitAllocated waits until every ServiceEntry without spec.addresses
// has status.addresses, as istiod's IP allocator writes them.
func waitAllocated(ctx context.Context, dyn dynamic.Interface, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		list, err := dyn.Resource(serviceEntries).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list ServiceEntries: %w", err)
		}
		left := 0
		for _, se := range list.Items {
			if unallocated(se) {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d ServiceEntries without addresses still unallocated after %v", left, len(list.Items), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unallocated reports whether se has neither spec nor status addresses.
func unallocated(se unstructured.Unstructured) bool {
	spec, _, _ := unstructured.NestedSlice(se.Object, "spec", "addresses")
	status, _, _ := unstructured.NestedSlice(se.Object, "status", "addresses")
	return len(spec) == 0 && len(status) == 0
}

// applier applies objects through the API server (server-side apply),
// as changes of the mesh istiod watches.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(cfg *rest.Config) (*applier, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0                       // no client-side rate limit
	cfg.ContentType, cfg.AcceptContentTypes = "", "" // Istio's types are JSON only
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(cachedmemory.NewMemCacheClient(dc))}, nil
}

// apply creates or updates every object of yaml (a Pod's status too).
func (a *applier) apply(ctx context.Context, yaml []byte) error {
	objs, err := decodeObjects(yaml)
	if err != nil {
		return err
	}
	opts := metav1.ApplyOptions{FieldManager: "loadtest", Force: true}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := a.mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
		r := a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		if _, err := r.Apply(ctx, o.GetName(), o, opts); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
		if _, ok := o.Object["status"]; ok && gvk.Kind == "Pod" {
			if _, err := r.ApplyStatus(ctx, o.GetName(), o, opts); err != nil {
				return fmt.Errorf("apply status of %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
			}
		}
	}
	return nil
}
