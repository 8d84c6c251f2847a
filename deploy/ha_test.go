package deploy_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

const (
	leaseName     = "controlplane-leader"
	leaseDuration = 4 * time.Second
	retryPeriod   = leaseDuration / 8 // what serve derives from the lease duration
)

// TestTwoReplicas starts two `serve` processes at the same moment on an
// empty namespace: exactly one CA root is made, both sign certificates that
// verify against it, only the leader records Events, and when the leader
// goes (SIGTERM-like stop, then SIGKILL of the next leader) another replica
// takes the lease within the lease duration and republishes the root.
func TestTwoReplicas(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	badServiceEntry(t, e, ns, "no-endpoints")
	args := []string{"--kubeconfig", e.KubeconfigPath, "--ca-namespace", ns, "--namespaces", ns,
		"--leader-elect-lease-duration", leaseDuration.String()}
	e2e.Binary(t) // build first, so both start at the same moment
	servers := []*e2e.Server{e2e.Start(t, args...), e2e.Start(t, args...)}
	for _, s := range servers {
		s.WaitReady(t, 60*time.Second)
	}
	root := oneRoot(t, e, ns, servers)
	tok := token(t, e, ns, "workload", "istio-ca")
	for i, s := range servers {
		chain, err := createCertificate(t, s, root, tok)
		if err != nil {
			t.Fatalf("replica %d: CreateCertificate: %v", i, err)
		}
		verifyChain(t, chain, root)
	}
	waitRootConfigMap(t, e, ns, root, 10*time.Second)
	leader, follower := leaderOf(t, e, ns, servers)
	oneEvent(t, e, ns, leader)

	// A graceful stop (what SIGTERM on pod deletion does) ends the xDS
	// streams so proxies reconnect to the other replica, exits well within
	// the Deployment's 30 s termination grace period, and releases the
	// lease: the follower takes it at once.
	stream := adsStream(t, leader.GRPCAddr, ns)
	var exit time.Duration
	took := handOver(t, e, ns, leader, follower, func(t testing.TB) {
		begin := time.Now()
		leader.Stop(t)
		exit = time.Since(begin)
	})
	if took >= leaseDuration {
		t.Errorf("after a graceful stop the lease moved in %s, want under %s", took, leaseDuration)
	}
	select {
	case err := <-stream:
		t.Logf("leader exited %s after SIGINT; its ADS stream ended: %v", exit.Round(time.Millisecond), err)
	default:
		t.Error("the leader's ADS stream did not end when it stopped")
	}
	if exit >= 10*time.Second { // e2e's Stop kills after 10 s
		t.Errorf("leader took %s to exit after SIGINT", exit)
	}
	adsStream(t, follower.GRPCAddr, ns) // the proxy's reconnect lands on the new leader
	waitRootConfigMap(t, e, ns, root, 5*time.Second)

	// SIGKILL leaves the lease held until it expires.
	third := e2e.Start(t, args...)
	third.WaitReady(t, 60*time.Second)
	third.WaitLog(t, "another replica leads", 10*time.Second)
	took = handOver(t, e, ns, follower, third, func(testing.TB) { follower.Kill() })
	// A killed leader's lease stays valid for the lease duration after its
	// last renewal. client-go's follower starts that clock when it observes
	// the renewal (its poll may come up to one jittered retry period after
	// the kill) and tries to acquire once per jittered retry period.
	if limit := leaseDuration + 2*retryPeriod*12/10; took > limit {
		t.Errorf("after SIGKILL the lease moved in %s, want at most %s", took, limit)
	}
	waitRootConfigMap(t, e, ns, root, 5*time.Second)
	chain, err := createCertificate(t, third, root, tok)
	if err != nil {
		t.Fatalf("new leader: CreateCertificate: %v", err)
	}
	verifyChain(t, chain, root)
	if got := caRoot(t, e, ns); string(got) != string(root) {
		t.Errorf("CA root changed across the hand-overs")
	}
}

// oneRoot checks that exactly one replica generated the root, that one CA
// Secret exists, and returns its root.
func oneRoot(t *testing.T, e *kubetest.Env, ns string, servers []*e2e.Server) []byte {
	t.Helper()
	generated := 0
	for _, s := range servers {
		generated += strings.Count(s.Logs(), `msg="generated a new CA root"`)
	}
	if generated != 1 {
		t.Errorf("%d replicas generated a CA root, want 1", generated)
	}
	list, err := e.Kube.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range list.Items {
		if s.Type == "istio.io/ca-root" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d CA secrets in %s, want 1", n, ns)
	}
	return caRoot(t, e, ns)
}

// leaderOf returns the replica holding the Lease, and the other one.
func leaderOf(t *testing.T, e *kubetest.Env, ns string, servers []*e2e.Server) (leader, follower *e2e.Server) {
	t.Helper()
	var holder string
	waitFor(t, "a lease holder", 10*time.Second, func() bool {
		holder = leaseHolder(t, e, ns)
		for _, s := range servers {
			if holder != "" && strings.Contains(s.Logs(), `msg="leader election: became the leader" lease=`+ns+"/"+leaseName+" identity="+holder) {
				leader = s
			}
		}
		return leader != nil
	}, func() string { return "holder " + holder })
	for _, s := range servers {
		if s != leader {
			follower = s
		}
	}
	return leader, follower
}

func leaseHolder(t *testing.T, e *kubetest.Env, ns string) string {
	t.Helper()
	l, err := e.Kube.CoordinationV1().Leases(ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// handOver deletes the root ConfigMap, ends the leader with stop and
// returns how long until next holds the lease; next must then republish.
func handOver(t *testing.T, e *kubetest.Env, ns string, leader, next *e2e.Server, stop func(testing.TB)) time.Duration {
	t.Helper()
	if err := e.Kube.CoreV1().ConfigMaps(ns).Delete(t.Context(), "istio-ca-root-cert", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete root ConfigMap: %v", err)
	}
	begin := time.Now()
	stop(t)
	var took time.Duration
	waitFor(t, "lease hand-over", 3*leaseDuration, func() bool {
		took = time.Since(begin)
		return strings.Contains(next.Logs(), `msg="leader election: became the leader"`)
	}, next.Logs)
	t.Logf("lease handed over %s after the leader was stopped (lease duration %s)", took.Round(time.Millisecond), leaseDuration)
	return took
}

// oneEvent checks that the broken ServiceEntry got one Warning Event,
// recorded once although both replicas see the problem.
func oneEvent(t *testing.T, e *kubetest.Env, ns string, leader *e2e.Server) {
	t.Helper()
	waitFor(t, "Warning Event", 10*time.Second, func() bool { return len(warningEvents(t, e, ns, "no-endpoints")) > 0 }, leader.Logs)
	time.Sleep(2 * time.Second) // time for a duplicate from the follower to arrive
	evs := warningEvents(t, e, ns, "no-endpoints")
	if len(evs) != 1 || evs[0].Count > 1 {
		t.Errorf("Warning Events on the broken entry: %d (count %d), want one recorded once", len(evs), evs[0].Count)
	}
}
