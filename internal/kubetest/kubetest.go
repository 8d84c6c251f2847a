// Package kubetest runs a real kube-apiserver and etcd (built from Go modules
// by hack/build-kube.sh) through controller-runtime's envtest, with the Istio
// CRDs from deploy/crds installed. It is for tests only: one server per test
// package, started from TestMain (see Main) or from a test (see New).
package kubetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// KubeVersion is the Kubernetes version hack/build-kube.sh builds.
const KubeVersion = "v1.37.2"

// ErrMissingBinaries means kube-apiserver or etcd was not found. Outside CI
// tests skip on it; with CI=true they fail.
var ErrMissingBinaries = errors.New("kube-apiserver/etcd binaries not found (run hack/build-kube.sh, or set KUBEBUILDER_ASSETS)")

// Env is a running kube-apiserver and etcd.
type Env struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file for Config, e.g. for
	// `controlplane serve --kubeconfig`.
	KubeconfigPath string
	// Kube is a clientset for the core Kubernetes API.
	Kube kubernetes.Interface
	// Istio is a clientset for the Istio API (JSON, never protobuf).
	Istio istioclient.Interface
	// StartDuration is how long starting the servers and installing the
	// CRDs took.
	StartDuration time.Duration

	env *envtest.Environment
	dir string
	mu  sync.Mutex // serialises StopAPIServer/StartAPIServer/Stop
}

// AssetsDir returns the folder holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS, or the cache folder hack/build-kube.sh writes.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache folder: %w", err)
	}
	return filepath.Join(cache, "controlplane", "kube-"+KubeVersion), nil
}

func findBinaries(dir string) error {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: no executable %s in %s", ErrMissingBinaries, name, dir)
		}
	}
	return nil
}

// Start starts etcd and kube-apiserver on random loopback ports and installs
// the CRDs from the module's deploy/crds. The caller must call Stop, also
// when Start fails (Stop on a nil or half-started Env is safe).
func Start() (*Env, error) { return StartWith(nil) }

// StartWith is Start with extra kube-apiserver flags (name without
// dashes -> value), e.g. a service-cluster-ip-range that holds more than
// envtest's 254 addresses.
func StartWith(apiServerFlags map[string]string) (*Env, error) {
	crds, err := CRDDir()
	if err != nil {
		return nil, err
	}
	return StartWithCRDs(apiServerFlags, crds)
}

// StartWithCRDs is StartWith with the CRDs of crds (a folder or a YAML
// file) instead of the module's deploy/crds, e.g. all of Istio's for a
// real istiod.
func StartWithCRDs(apiServerFlags map[string]string, crds string) (*Env, error) {
	begin := time.Now()
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime's global logger
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	if err := findBinaries(assets); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("create work folder: %w", err)
	}
	e := &Env{dir: dir, env: newEnvironment(assets, crds, dir)}
	for name, value := range apiServerFlags {
		e.env.ControlPlane.GetAPIServer().Configure().Set(name, value)
	}
	if err := os.Mkdir(e.env.ControlPlane.APIServer.CertDir, 0o700); err != nil {
		return e, fmt.Errorf("create cert folder: %w", err)
	}
	cfg, err := e.env.Start()
	if err != nil {
		return e, fmt.Errorf("start envtest (assets %s): %w", assets, err)
	}
	if err := e.setClients(cfg); err != nil {
		return e, err
	}
	e.StartDuration = time.Since(begin)
	return e, nil
}

func newEnvironment(assets, crds, dir string) *envtest.Environment {
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
	}
	api := env.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(assets, "kube-apiserver")
	// A fixed cert folder that we own keeps the serving certificates, the
	// client CA and the port across StopAPIServer/StartAPIServer, so the
	// existing client configs stay valid.
	api.CertDir = filepath.Join(dir, "apiserver")
	api.SecureServing.Address = "127.0.0.1"
	// Without a grace period kube-apiserver waits for open watches to end
	// on SIGTERM, which they never do while informers run: it would take
	// the full stop timeout and a SIGKILL.
	api.Configure().Set("shutdown-watch-termination-grace-period", "1s")
	return env
}

func (e *Env) setClients(cfg *rest.Config) error {
	e.Config = cfg
	e.KubeconfigPath = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.KubeconfigPath, e.env.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes clientset: %w", err)
	}
	istio, err := istioclient.NewForConfig(JSONConfig(cfg))
	if err != nil {
		return fmt.Errorf("istio clientset: %w", err)
	}
	e.Kube, e.Istio = kube, istio
	return nil
}

// JSONConfig returns a copy of cfg that speaks JSON only. The Istio types
// have no protobuf encoding for the API server, so an Istio clientset must
// not ask for it.
func JSONConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = ""
	c.AcceptContentTypes = ""
	return c
}

// Stop stops both servers and removes their files. It is safe on a nil Env
// and after a failed Start.
func (e *Env) Stop() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.env != nil {
		err = e.env.Stop()
	}
	if rmErr := os.RemoveAll(e.dir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove %s: %w", e.dir, rmErr))
	}
	return err
}
