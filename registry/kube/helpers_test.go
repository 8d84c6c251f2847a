package kube_test

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/kubetest"
	"github.com/librarymesh/controlplane/internal/testutil"
	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/kube"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }

var nsCounter atomic.Int32

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T, e *kubetest.Env) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), nsCounter.Add(1))
	if len(name) > 63 {
		name = name[len(name)-63:]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return name
}

type fixture struct {
	store  *registry.Store
	source *kube.Source
	reg    *prometheus.Registry
}

// startSource runs a Source watching namespaces until the test ends and
// waits for it to sync.
func startSource(t *testing.T, e *kubetest.Env, namespaces ...string) *fixture {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f := &fixture{store: registry.NewStore(logger), reg: prometheus.NewRegistry()}
	src, err := kube.New(kube.Config{RestConfig: e.Config, Namespaces: namespaces, Store: f.store,
		Logger: logger, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	f.source = src
	testutil.Background(t, "Start", src.Start)
	waitFor(t, "source synced", src.HasSynced)
	return f
}

// waitFor polls cond until it holds, or fails the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, 30*time.Second, cond)
}

// waitView polls the store's view until cond holds.
func (f *fixture) waitView(t *testing.T, what string, cond func(registry.View) bool) registry.View {
	t.Helper()
	var v registry.View
	waitFor(t, what, func() bool {
		v = f.store.View()
		return cond(v)
	})
	return v
}

func addresses(eps []*registry.Endpoint) []string {
	out := make([]string, len(eps))
	for i, ep := range eps {
		out[i] = ep.Address
	}
	return out
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// counter returns the value of a counter with the label values, or 0.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			if labelValues(m.GetLabel()) == strings.Join(labels, ",") {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelValues(pairs []*dto.LabelPair) string {
	vals := make([]string, len(pairs))
	for i, p := range pairs {
		vals[i] = p.GetValue()
	}
	return strings.Join(vals, ",")
}
