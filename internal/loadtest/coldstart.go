package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	cachedmemory "k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

// Cold start targets (issue 20): exec to /readyz 200 with scenario S.
const (
	ColdStartYAMLTarget = time.Second
	ColdStartKubeTarget = 3 * time.Second
)

// ColdStartConfig says what to start.
type ColdStartConfig struct {
	Scenario  Scenario
	WorkDir   string
	ServerBin string
	Runs      int  // starts per source (default 3)
	Kube      bool // also from a real kube-apiserver (kubetest's binaries)
	Progress  io.Writer
}

// ColdStart is exec to the first /readyz 200 of each start, in seconds.
type ColdStart struct {
	Services int       `json:"services"`
	YAML     []float64 `json:"yaml_seconds"`
	Kube     []float64 `json:"kube_seconds,omitempty"`
	// KubeObjects were created through the API server before the starts,
	// in KubeCreateSeconds.
	KubeObjects       int     `json:"kube_objects,omitempty"`
	KubeCreateSeconds float64 `json:"kube_create_seconds,omitempty"`
}

// RunColdStart writes the scenario into a folder and starts the server on
// it Runs times, each with a fresh data folder; with Kube, it creates the
// same objects in a real kube-apiserver and starts the server on that.
func RunColdStart(ctx context.Context, cfg ColdStartConfig) (*ColdStart, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = 3
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir := filepath.Join(cfg.WorkDir, "coldstart", "mesh")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := writeMesh(dir, cfg.Scenario); err != nil {
		return nil, err
	}
	cs := &ColdStart{Services: cfg.Scenario.Services}
	var err error
	if cs.YAML, err = startTimes(ctx, cfg, "yaml", []string{"--config-dir", dir}); err != nil {
		return cs, err
	}
	if !cfg.Kube {
		return cs, nil
	}
	// The scenario's Services have cluster IPs in 10.96.0.0/16 (and the API
	// server takes the range's first address for its own Service).
	env, err := kubetest.StartWith(map[string]string{"service-cluster-ip-range": "10.64.0.0/10"})
	defer env.Stop() //nolint:errcheck // best effort: a failed stop leaves only temporary files
	if err != nil {
		return cs, fmt.Errorf("kube-apiserver: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "cold start: kube-apiserver started in %s\n", env.StartDuration.Round(time.Millisecond))
	begin := time.Now()
	if cs.KubeObjects, err = createFolder(ctx, env.Config, dir); err != nil {
		return cs, err
	}
	cs.KubeCreateSeconds = time.Since(begin).Seconds()
	fmt.Fprintf(cfg.Progress, "cold start: created %d objects through the API server in %.1fs\n", cs.KubeObjects, cs.KubeCreateSeconds)
	cs.Kube, err = startTimes(ctx, cfg, "kube", []string{"--kubeconfig", env.KubeconfigPath, "--leader-elect=false"})
	return cs, err
}

// startTimes starts the server cfg.Runs times with args.
func startTimes(ctx context.Context, cfg ColdStartConfig, source string, args []string) ([]float64, error) {
	var out []float64
	for k := range cfg.Runs {
		base := filepath.Join(cfg.WorkDir, "coldstart", fmt.Sprintf("%s-%d", source, k))
		if err := os.MkdirAll(base, 0o755); err != nil {
			return out, err
		}
		all := append([]string{"serve", "--data-dir", filepath.Join(base, "data"), "--grpc-addr", "127.0.0.1:0", "--secure-grpc-addr", "",
			"--inject-addr", "", "--http-addr", "127.0.0.1:0"}, args...)
		p, err := startProcess(ctx, cfg.ServerBin, all, filepath.Join(base, "server.log"), unpinned)
		if err != nil {
			return out, fmt.Errorf("cold start from %s: %w", source, err)
		}
		services, endpoints, err := modelSize(p)
		p.stop()
		if err != nil {
			return out, fmt.Errorf("cold start from %s: %w", source, err)
		}
		// A ready server holds the whole scenario: readiness must mean the
		// sources were read, not just that the process is up.
		wantEndpoints := cfg.Scenario.kube()*4 + cfg.Scenario.entries()*2 // as writeMesh makes them
		if services < cfg.Scenario.Services || endpoints < wantEndpoints {
			return out, fmt.Errorf("cold start from %s: ready with %d services and %d endpoints, want %d and %d",
				source, services, endpoints, cfg.Scenario.Services, wantEndpoints)
		}
		out = append(out, p.startup.Seconds())
		fmt.Fprintf(cfg.Progress, "cold start from %s: exec to /readyz 200 in %.3fs\n", source, p.startup.Seconds())
	}
	return out, nil
}

// modelSize counts the services and endpoints in the server's model
// (/debug/registryz).
func modelSize(p *process) (services, endpoints int, err error) {
	resp, err := http.Get("http://" + p.httpAddr + "/debug/registryz")
	if err != nil {
		return 0, 0, fmt.Errorf("get /debug/registryz: %w", err)
	}
	defer resp.Body.Close()
	var dump struct {
		Services  []json.RawMessage            `json:"services"`
		Endpoints map[string][]json.RawMessage `json:"endpoints"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
		return 0, 0, fmt.Errorf("decode /debug/registryz: %w", err)
	}
	for _, eps := range dump.Endpoints {
		endpoints += len(eps)
	}
	return len(dump.Services), endpoints, nil
}

// createFolder creates every object of the folder's YAML files through the
// API server, with the status a Pod's kubelet would set, 16 at a time, and
// returns how many it created.
func createFolder(ctx context.Context, cfg *rest.Config, dir string) (int, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0                       // no client-side rate limit
	cfg.ContentType, cfg.AcceptContentTypes = "", "" // Istio's types are JSON only
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cachedmemory.NewMemCacheClient(dc))
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "istio-system"}}}
	if _, err := dyn.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return 0, fmt.Errorf("create namespace istio-system: %w", err)
	}
	objs, err := readFolder(dir)
	if err != nil {
		return 0, err
	}
	work := make(chan *unstructured.Unstructured)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := createObject(ctx, dyn, mapper, o); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
	return len(objs) + 1, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// createObject creates o and then, if it has one, sets its status.
func createObject(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	status, hasStatus := o.Object["status"]
	r := dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	created, err := r.Create(ctx, o, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	if !hasStatus || gvk.Kind != "Pod" {
		return nil
	}
	created.Object["status"] = status
	if _, err := r.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status of %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// readFolder reads every object of the folder's YAML files.
func readFolder(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	var out []*unstructured.Unstructured
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		objs, err := decodeObjects(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// decodeObjects decodes every object of a YAML (or JSON) stream.
func decodeObjects(b []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(o.Object) > 0 {
			out = append(out, o)
		}
	}
}

// WriteTable prints the median and slowest start of each source against
// its target (met when the median is within it).
func (cs *ColdStart) WriteTable(w io.Writer) error {
	var err error
	line := func(source string, secs []float64, target time.Duration) {
		if len(secs) == 0 || err != nil {
			return
		}
		s := slices.Sorted(slices.Values(secs))
		verdict := "met"
		if time.Duration(s[len(s)/2]*float64(time.Second)) > target {
			verdict = "NOT met"
		}
		_, err = fmt.Fprintf(w, "cold start from %s, %d services: exec to /readyz 200 median %.3fs, max %.3fs over %d starts (target <= %s: %s)\n",
			source, cs.Services, s[len(s)/2], s[len(s)-1], len(s), target, verdict)
	}
	line("a YAML folder", cs.YAML, ColdStartYAMLTarget)
	line("a kube-apiserver", cs.Kube, ColdStartKubeTarget)
	return err
}
