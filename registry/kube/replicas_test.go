package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/testutil"
	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/autoregister"
	"github.com/librarymesh/controlplane/registry/kube"
)

const (
	agingGrace   = 500 * time.Millisecond
	agingTimeout = 1500 * time.Millisecond
)

// heartbeatReplica is a replica whose sweep runs (with its heartbeat in a
// Lease of ns) until ctx ends.
func heartbeatReplica(t *testing.T, ctx context.Context, f *fixture, ns, name string) *autoregister.Controller {
	t.Helper()
	b, err := kube.NewWorkloadEntries(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := autoregister.New(autoregister.Config{Backend: b, Instance: name, GracePeriod: agingGrace,
		Replicas: kube.ReplicaLeases{Client: env.Kube, Namespace: ns, Duration: agingTimeout}, ReplicaTimeout: agingTimeout,
		Groups: func(ns, n string) *registry.WorkloadGroup { return f.store.View().WorkloadGroup(ns, n) }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return c
}

// TestAutoRegisterDeadReplica: replicas keep a heartbeat Lease each. While
// replica 1 is alive its VM's entry stays however long it is connected; once
// replica 1 dies (no heartbeat, its connection never closed) replica 2
// marks the entry disconnected after the replica timeout and deletes it a
// grace period later. Replica 2's own entry, which a third party marks
// disconnected, is marked connected again and survives.
func TestAutoRegisterDeadReplica(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	f := startSource(t, e, ns)
	ctx := t.Context()
	wg := &networkingv1.WorkloadGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pg"},
		Spec: networkingapi.WorkloadGroup{Metadata: &networkingapi.WorkloadGroup_ObjectMeta{Labels: map[string]string{"app": "pg"}},
			Template: &networkingapi.WorkloadEntry{ServiceAccount: "postgres", Ports: map[string]uint32{"tcp": 5432}}}}
	if _, err := e.Istio.NetworkingV1().WorkloadGroups(ns).Create(ctx, wg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitView(t, "group", func(v registry.View) bool { return v.WorkloadGroup(ns, "pg") != nil })

	ctx1, kill1 := context.WithCancel(ctx)
	r1 := heartbeatReplica(t, ctx1, f, ns, "replica-1")
	r2 := heartbeatReplica(t, ctx, f, ns, "Replica_2") // a name a Lease cannot carry as is
	w := func(ip string) autoregister.Workload {
		return autoregister.Workload{ProxyID: "sidecar~" + ip + "~vm." + ns, Group: "pg", Namespace: ns, IP: ip, ServiceAccount: "postgres"}
	}
	if _, err := r1.Connect(ctx, w("10.0.6.1")); err != nil { // never closed: replica 1 dies holding it
		t.Fatal(err)
	}
	s2, err := r2.Connect(ctx, w("10.0.6.2"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, name := range []string{"replica-1", "Replica_2"} {
		lease := kube.ReplicaLeaseName(name)
		testutil.Eventually(t, "heartbeat Lease "+lease, 10*time.Second, func() bool {
			l, err := e.Kube.CoordinationV1().Leases(ns).Get(ctx, lease, metav1.GetOptions{})
			return err == nil && *l.Spec.HolderIdentity == name
		})
	}

	// Alive: three replica timeouts later both entries are still connected.
	time.Sleep(3 * agingTimeout)
	for _, name := range []string{"pg-10.0.6.1", "pg-10.0.6.2"} {
		if we := getEntry(t, ns, name); we.Annotations[autoregister.AnnotationConnectedAt] == "" {
			t.Fatalf("%s of a live replica marked disconnected: %v", name, we.Annotations)
		}
	}

	kill1()
	died := time.Now()
	waitFor(t, "the dead replica's entry deleted", func() bool {
		_, err := e.Istio.NetworkingV1().WorkloadEntries(ns).Get(ctx, "pg-10.0.6.1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	took := time.Since(died)
	t.Logf("the dead replica's entry was deleted %s after its last heartbeat stopped (timeout %s, grace %s)", took.Round(10*time.Millisecond), agingTimeout, agingGrace)
	if took < agingTimeout {
		t.Errorf("deleted %s after the replica died, before the replica timeout %s", took, agingTimeout)
	}

	// Someone marks replica 2's live entry disconnected: it is marked connected again.
	we := getEntry(t, ns, "pg-10.0.6.2")
	delete(we.Annotations, autoregister.AnnotationConnectedAt)
	we.Annotations[autoregister.AnnotationDisconnectedAt] = time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := e.Istio.NetworkingV1().WorkloadEntries(ns).Update(ctx, we, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the live entry marked connected again", func() bool {
		we := getEntry(t, ns, "pg-10.0.6.2")
		return we.Annotations[autoregister.AnnotationConnectedAt] != "" && we.Annotations[autoregister.AnnotationDisconnectedAt] == ""
	})
	time.Sleep(2 * agingGrace)
	if we := getEntry(t, ns, "pg-10.0.6.2"); we.Annotations[autoregister.AnnotationController] != "Replica_2" {
		t.Errorf("the live entry after the sweep: %v", we.Annotations)
	}
}

func TestReplicaLeaseName(t *testing.T) {
	for in, want := range map[string]string{
		"controlplane-7d9f-abcde": "controlplane-replica-controlplane-7d9f-abcde",
		"Replica_2":               "controlplane-replica-replica-2-",
		"":                        "controlplane-replica-",
		strings.Repeat("a", 300):  "controlplane-replica-" + strings.Repeat("a", 200) + "-",
	} {
		if got := kube.ReplicaLeaseName(in); !strings.HasPrefix(got, want) || len(got) > 253 ||
			strings.HasSuffix(got, "-") || strings.Contains(got, "_") {
			t.Errorf("ReplicaLeaseName(%q) = %q, want %q... (a valid name)", in, got, want)
		}
	}
	if kube.ReplicaLeaseName("a_b") == kube.ReplicaLeaseName("a-b") {
		t.Error("two instances share a Lease")
	}
}
