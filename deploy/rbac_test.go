package deploy_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

const systemNS = "istio-system"

// installRBAC creates the rendered ServiceAccount, ClusterRole, Role and
// their bindings from deploy/ under the name controlplane-SUFFIX, after
// letting edit change the ClusterRole, and returns a kubeconfig whose only
// credential is a token of that ServiceAccount (TokenRequest), as a pod of
// the Deployment would have.
func installRBAC(t *testing.T, e *kubetest.Env, suffix string, edit func(*rbacv1.ClusterRole)) string {
	t.Helper()
	ensureNamespace(t, e, systemNS)
	objs := render(t, ".")
	name := "controlplane-" + suffix
	var (
		cr   rbacv1.ClusterRole
		crb  rbacv1.ClusterRoleBinding
		role rbacv1.Role
		rb   rbacv1.RoleBinding
	)
	find(t, objs, "ClusterRole", "controlplane", &cr)
	find(t, objs, "ClusterRoleBinding", "controlplane", &crb)
	find(t, objs, "Role", "controlplane", &role)
	find(t, objs, "RoleBinding", "controlplane", &rb)
	if edit != nil {
		edit(&cr)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: systemNS}}
	if !slices.Equal(crb.Subjects, []rbacv1.Subject{{Kind: "ServiceAccount", Name: "controlplane", Namespace: systemNS}}) ||
		!slices.Equal(rb.Subjects, crb.Subjects) {
		t.Fatalf("rendered bindings name subjects %v and %v, want ServiceAccount istio-system/controlplane", crb.Subjects, rb.Subjects)
	}
	cr.Name, crb.Name, role.Name, rb.Name = name, name, name, name
	crb.RoleRef.Name, rb.RoleRef.Name = name, name
	crb.Subjects, rb.Subjects = subject, subject
	ctx, rbac := t.Context(), e.Kube.RbacV1()
	for _, err := range []error{
		ignore(rbac.ClusterRoles().Create(ctx, &cr, metav1.CreateOptions{})),
		ignore(rbac.ClusterRoleBindings().Create(ctx, &crb, metav1.CreateOptions{})),
		ignore(rbac.Roles(systemNS).Create(ctx, &role, metav1.CreateOptions{})),
		ignore(rbac.RoleBindings(systemNS).Create(ctx, &rb, metav1.CreateOptions{})),
	} {
		if err != nil {
			t.Fatalf("install RBAC %s: %v", name, err)
		}
	}
	return tokenKubeconfig(t, e, token(t, e, systemNS, name))
}

func ignore[T any](_ T, err error) error { return err }

// serveAs runs `controlplane serve` out of cluster with kubeconfig and waits
// until it is ready (sources synced, CA loaded).
func serveAs(t *testing.T, kubeconfig string, args ...string) *e2e.Server {
	t.Helper()
	return e2e.Serve(t, append([]string{"--kubeconfig", kubeconfig, "--ca-namespace", systemNS,
		"--leader-elect-lease-duration", "4s"}, args...)...)
}

// TestRBACSuffices runs the server with the deployed ServiceAccount's token
// and the rules from deploy/ exactly: it starts, syncs every informer,
// becomes the leader, signs a certificate for a workload's token (which
// needs TokenReview), publishes the root ConfigMap, records a Warning Event
// on a broken ServiceEntry, and logs no "forbidden" anywhere.
func TestRBACSuffices(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	badServiceEntry(t, e, ns, "no-endpoints")
	kc := installRBAC(t, e, "full", nil)
	s := serveAs(t, kc)
	s.WaitLog(t, "leader election: became the leader", 10*time.Second)
	root := caRoot(t, e, systemNS)

	chain, err := createCertificate(t, s, root, token(t, e, ns, "workload", "istio-ca"))
	if err != nil {
		t.Fatalf("CreateCertificate with a workload token: %v\n%s", err, s.Logs())
	}
	if got, want := verifyChain(t, chain, root), "spiffe://cluster.local/ns/"+ns+"/sa/workload"; got != want {
		t.Errorf("signed %s, want %s", got, want)
	}
	waitRootConfigMap(t, e, ns, root, 10*time.Second)
	waitFor(t, "Warning Event on the broken ServiceEntry", 10*time.Second,
		func() bool { return len(warningEvents(t, e, ns, "no-endpoints")) > 0 }, s.Logs)
	if strings.Contains(strings.ToLower(s.Logs()), "forbidden") {
		t.Errorf("the server was refused something with the deployed RBAC:\n%s", s.Logs())
	}
}

// TestRBACMissingRule removes one rule at a time from the ClusterRole and
// checks that exactly the operation needing it fails, with a log line that
// names what was refused.
func TestRBACMissingRule(t *testing.T) {
	e := env.Need(t)
	tests := []struct {
		name     string
		resource string // whose verbs are removed
		verbs    []string
		synced   bool // whether the server still syncs and serves
		// check runs against the server and returns the log line to expect.
		check func(t *testing.T, s *e2e.Server, ns string) string
	}{
		{"no TokenReview", "tokenreviews", []string{"create"}, true, func(t *testing.T, s *e2e.Server, ns string) string {
			_, err := createCertificate(t, s, caRoot(t, e, systemNS), token(t, e, ns, "workload", "istio-ca"))
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "tokenreviews.authentication.k8s.io is forbidden") {
				t.Errorf("CreateCertificate: %v, want Unavailable naming the forbidden TokenReview", err)
			}
			return `msg="certificate request refused" reason=internal code=Unavailable error="token review against the Kubernetes API server failed: tokenreviews.authentication.k8s.io is forbidden`
		}},
		{"no ConfigMap create", "configmaps", []string{"create"}, true, func(t *testing.T, s *e2e.Server, ns string) string {
			return `msg="publish root" namespace=` + ns + ` err="create configmap ` + ns + `/istio-ca-root-cert: configmaps is forbidden`
		}},
		// Without list and watch on ServiceEntries the informer cannot sync,
		// so the server never serves (client-go's reflector logs why). With
		// watch alone it would sync: client-go v0.37 lists through a watch
		// (WatchList); list is the fallback for API servers without it.
		{"no ServiceEntry list or watch", "serviceentries", []string{"list", "watch"}, false, func(t *testing.T, s *e2e.Server, ns string) string {
			return `serviceentries.networking.istio.io is forbidden: User \"system:serviceaccount:istio-system:controlplane-no-serviceentry-list-or-watch\" cannot`
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNamespace(t, e)
			kc := installRBAC(t, e, strings.ReplaceAll(strings.ToLower(tt.name), " ", "-"), func(cr *rbacv1.ClusterRole) {
				for _, v := range tt.verbs {
					removeVerb(t, cr, tt.resource, v)
				}
			})
			var s *e2e.Server
			if tt.synced {
				s = serveAs(t, kc)
			} else {
				s = e2e.Start(t, "--kubeconfig", kc, "--ca-namespace", systemNS, "--leader-elect-lease-duration", "4s")
			}
			line := tt.check(t, s, ns)
			s.WaitLog(t, line, 15*time.Second)
			if !tt.synced {
				time.Sleep(time.Second) // the reflector retried by now; it must still not sync
			}
			if !tt.synced && (strings.Contains(s.Logs(), "sources synced") || s.Exited()) {
				t.Errorf("server synced or exited without list on %s:\n%s", tt.resource, s.Logs())
			}
			for _, l := range strings.Split(s.Logs(), "\n") {
				if strings.Contains(l, line) {
					t.Logf("server log: %s", l)
					break
				}
			}
			if _, err := e.Kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "istio-ca-root-cert", metav1.GetOptions{}); tt.resource == "configmaps" && err == nil {
				t.Errorf("root ConfigMap in %s exists though create was not allowed", ns)
			}
		})
	}
}

// removeVerb drops verb on resource from every rule of cr, failing if no
// rule granted it.
func removeVerb(t *testing.T, cr *rbacv1.ClusterRole, resource, verb string) {
	t.Helper()
	found := false
	for i, r := range cr.Rules {
		if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			found = true
			cr.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == verb })
		}
	}
	if !found {
		t.Fatalf("ClusterRole grants no %s on %s", verb, resource)
	}
	cr.Rules = slices.DeleteFunc(cr.Rules, func(r rbacv1.PolicyRule) bool { return len(r.Verbs) == 0 })
}
