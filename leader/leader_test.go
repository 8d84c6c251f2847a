package leader_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/librarymesh/controlplane/certauthority"
	cakube "github.com/librarymesh/controlplane/certauthority/kube"
	"github.com/librarymesh/controlplane/internal/kubetest"
	"github.com/librarymesh/controlplane/internal/testutil"
	"github.com/librarymesh/controlplane/leader"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }

func newNamespace(t *testing.T, e *kubetest.Env) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"}}
	got, err := e.Kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return got.Name
}

// start runs an elector in ns until the returned cancel is called (which
// waits for Start to return).
func start(t *testing.T, ns, id string, lease time.Duration) (*leader.Elector, func()) {
	t.Helper()
	e, err := leader.New(leader.Config{Client: env.Kube, Namespace: ns, Identity: id, LeaseDuration: lease,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Start(ctx); err != nil {
			t.Errorf("Start: %v", err)
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return e, stop
}

// countingStore counts Create calls on the Secret store.
type countingStore struct {
	certauthority.KeyStore
	creates *atomic.Int32
}

func (c countingStore) Create(ctx context.Context, m *certauthority.Material) error {
	c.creates.Add(1)
	return c.KeyStore.Create(ctx, m)
}

// TestOneRootWhenStartingTogether starts three replicas' electors and CAs at
// the same moment on an empty namespace: only the leader generates and
// stores a root (one Create call), and every CA signs from it.
func TestOneRootWhenStartingTogether(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	var creates atomic.Int32
	roots := make([][]byte, 3)
	var wg sync.WaitGroup
	for i := range roots {
		el, _ := start(t, ns, string(rune('a'+i)), 4*time.Second)
		wg.Go(func() {
			cfg := cakube.ModeConfig(e.Kube, ns)
			cfg.Store = certauthority.LeaderCreates(countingStore{KeyStore: cfg.Store, creates: &creates}, el.IsLeader, slog.New(slog.DiscardHandler))
			cfg.Logger = slog.New(slog.DiscardHandler)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			ca, err := certauthority.New(ctx, cfg)
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
				return
			}
			roots[i] = ca.RootPEM()
		})
	}
	wg.Wait()
	if n := creates.Load(); n != 1 {
		t.Errorf("%d replicas tried to store a root, want only the leader", n)
	}
	for i, r := range roots {
		if string(r) != string(roots[0]) || len(r) == 0 {
			t.Errorf("replica %d has a different root", i)
		}
	}
}

// TestHandOver checks that leader tasks run only during a term, and that a
// leader that stops releases the lease so the other takes it at once.
func TestHandOver(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	lease := 4 * time.Second
	a, stopA := start(t, ns, "a", lease)
	waitLeader(t, a, 10*time.Second)
	b, _ := start(t, ns, "b", lease)
	running := map[string]*atomic.Bool{"a": {}, "b": {}}
	for id, el := range map[string]*leader.Elector{"a": a, "b": b} {
		el.WhileLeading(func(ctx context.Context) {
			running[id].Store(true)
			<-ctx.Done()
			running[id].Store(false)
		})
	}
	time.Sleep(lease / 2)
	if b.IsLeader() || running["b"].Load() || !running["a"].Load() {
		t.Fatalf("while a leads: a task running %v, b leader %v, b task running %v", running["a"].Load(), b.IsLeader(), running["b"].Load())
	}
	begin := time.Now()
	stopA()
	if running["a"].Load() {
		t.Error("a's task still runs after a stopped")
	}
	waitLeader(t, b, lease)
	t.Logf("b leads %s after a stopped", time.Since(begin).Round(time.Millisecond))
	testutil.Eventually(t, "b's task", time.Second, running["b"].Load)
}

func TestRecorderOnlyOnLeader(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	a, _ := start(t, ns, "a", 4*time.Second)
	waitLeader(t, a, 10*time.Second)
	b, _ := start(t, ns, "b", 4*time.Second)
	obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}}
	for _, tt := range []struct {
		name string
		el   *leader.Elector
		want int
	}{{"leader", a, 1}, {"follower", b, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			fake := record.NewFakeRecorder(10)
			rec := tt.el.Recorder(fake)
			rec.Event(obj, corev1.EventTypeWarning, "R", "m")
			rec.Eventf(obj, corev1.EventTypeWarning, "R", "%s", "m")
			rec.AnnotatedEventf(obj, nil, corev1.EventTypeWarning, "R", "%s", "m")
			if got := len(fake.Events); got != 3*tt.want {
				t.Errorf("recorded %d events, want %d", got, 3*tt.want)
			}
		})
	}
}

func waitLeader(t *testing.T, e *leader.Elector, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, e.Identity()+" leads", timeout, e.IsLeader)
}
