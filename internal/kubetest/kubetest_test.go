package kubetest_test

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/librarymesh/controlplane/internal/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }

func TestCRDsInstalled(t *testing.T) {
	e := env.Need(t)
	ctx := t.Context()
	if _, err := e.Istio.NetworkingV1().ServiceEntries("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list v1 ServiceEntries: %v", err)
	}
	if _, err := e.Istio.NetworkingV1beta1().ServiceEntries("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list v1beta1 ServiceEntries: %v", err)
	}
	for _, list := range []func(context.Context, metav1.ListOptions) error{
		func(ctx context.Context, o metav1.ListOptions) error {
			_, err := e.Istio.NetworkingV1().WorkloadEntries("").List(ctx, o)
			return err
		},
		func(ctx context.Context, o metav1.ListOptions) error {
			_, err := e.Istio.NetworkingV1().DestinationRules("").List(ctx, o)
			return err
		},
		func(ctx context.Context, o metav1.ListOptions) error {
			_, err := e.Istio.SecurityV1().PeerAuthentications("").List(ctx, o)
			return err
		},
		func(ctx context.Context, o metav1.ListOptions) error {
			_, err := e.Istio.NetworkingV1().Gateways("").List(ctx, o)
			return err
		},
		func(ctx context.Context, o metav1.ListOptions) error {
			_, err := e.Istio.NetworkingV1().VirtualServices("").List(ctx, o)
			return err
		},
	} {
		if err := list(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("list: %v", err)
		}
	}
}

func TestKubeconfigFile(t *testing.T) {
	e := env.Need(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", e.KubeconfigPath)
	if err != nil {
		t.Fatalf("load %s: %v", e.KubeconfigPath, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace default through the kubeconfig file: %v", err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	e := env.Need(t)
	ctx := t.Context()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := e.Kube.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := e.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(begin)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := e.Kube.CoreV1().ConfigMaps("default").Get(short, "survivor", metav1.GetOptions{}); err == nil {
		t.Fatal("the API server still answers after StopAPIServer")
	}
	begin = time.Now()
	if err := e.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %s, restart %s", stopped.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	got, err := e.Kube.CoreV1().ConfigMaps("default").Get(ctx, "survivor", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get after restart with the old client: %v", err)
	}
	if got.Data["k"] != "v" {
		t.Errorf("data after restart = %v", got.Data)
	}
}
