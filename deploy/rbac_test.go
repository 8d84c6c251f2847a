package deploy_test

import (
	"context"
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
// on a broken ServiceEntry, sets the caBundle of the sidecar injector's
// MutatingWebhookConfiguration, and logs no "forbidden" anywhere.
func TestRBACSuffices(t *testing.T) {
	e := env.Need(t)
	ns := newNamespace(t, e)
	badServiceEntry(t, e, ns, "no-endpoints")
	applyWebhookConfig(t, e)
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
	waitCABundle(t, e, root, 10*time.Second)
	waitFor(t, "Warning Event on the broken ServiceEntry", 10*time.Second,
		func() bool { return len(warningEvents(t, e, ns, "no-endpoints")) > 0 }, s.Logs)
	if strings.Contains(strings.ToLower(s.Logs()), "forbidden") {
		t.Errorf("the server was refused something with the deployed RBAC:\n%s", s.Logs())
	}
}

// TestRBACMissingRule removes one rule at a time from the ClusterRole and
// checks that the server says so at start (naming the permission, what it
// breaks and the command that fixes it) and that exactly the operation
// needing it fails, with a log line that names what was refused. Without a
// permission it cannot serve without, the server exits at once.
func TestRBACMissingRule(t *testing.T) {
	e := env.Need(t)
	tests := []struct {
		name     string
		resource string // whose verbs are removed
		verbs    []string
		startLog string // what the server says at start
		// check runs against a server that runs without the rule and
		// returns the log line to expect; nil when the server must exit.
		check func(t *testing.T, s *e2e.Server, ns string) string
	}{
		{"no TokenReview", "tokenreviews", []string{"create"},
			`msg="permission missing; the server runs without it" permission="create tokenreviews.authentication.k8s.io in all namespaces"`,
			func(t *testing.T, s *e2e.Server, ns string) string {
				_, err := createCertificate(t, s, caRoot(t, e, systemNS), token(t, e, ns, "workload", "istio-ca"))
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "tokenreviews.authentication.k8s.io is forbidden") {
					t.Errorf("CreateCertificate: %v, want Unavailable naming the forbidden TokenReview", err)
				}
				return `msg="certificate request refused" reason=internal code=Unavailable error="token review against the Kubernetes API server failed: tokenreviews.authentication.k8s.io is forbidden`
			}},
		{"no ConfigMap create", "configmaps", []string{"create"},
			`permission="create configmaps in all namespaces" effect="the root ConfigMap istio-ca-root-cert is not published" fix="kubectl apply -k deploy/"`,
			func(t *testing.T, s *e2e.Server, ns string) string {
				return `msg="publish root" namespace=` + ns + ` err="create configmap ` + ns + `/istio-ca-root-cert: configmaps is forbidden`
			}},
		// Without Secrets the server still syncs and serves; it says that
		// gateways get no credentials and names the fix.
		{"no Secret list or watch", "secrets", []string{"list", "watch"},
			`permission="list secrets in all namespaces" effect="gateways get no credentialName certificates"`,
			func(t *testing.T, s *e2e.Server, ns string) string {
				return `msg="kube source: not allowed to list and watch Secrets; Gateway credentialName certificates are not served`
			}},
		// Without list and watch on ServiceEntries the informer could never
		// sync, so the server would never serve: it exits instead.
		{"no ServiceEntry list or watch", "serviceentries", []string{"list", "watch"},
			"permission missing: list serviceentries.networking.istio.io in all namespaces (the Kubernetes source cannot sync without it, so the server would never serve); install the RBAC with `kubectl apply -k deploy/`",
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNamespace(t, e)
			kc := installRBAC(t, e, strings.ReplaceAll(strings.ToLower(tt.name), " ", "-"), func(cr *rbacv1.ClusterRole) {
				for _, v := range tt.verbs {
					removeVerb(t, cr, tt.resource, v)
				}
			})
			if tt.check == nil {
				checkExits(t, kc, tt.startLog)
				return
			}
			s := serveAs(t, kc)
			s.WaitLog(t, tt.startLog, time.Second)
			line := tt.check(t, s, ns)
			s.WaitLog(t, line, 15*time.Second)
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

// checkExits runs serve with kubeconfig and wants it to exit within 5 s
// with an error that contains want.
func checkExits(t *testing.T, kubeconfig, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e2e.Binary(t)
	start := time.Now()
	_, err := e2e.Run(ctx, t, "serve", "--kubeconfig", kubeconfig, "--ca-namespace", systemNS,
		"--grpc-addr", "127.0.0.1:0", "--secure-grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatal("serve succeeded without a permission it cannot serve without")
	case !strings.Contains(err.Error(), want):
		t.Errorf("serve failed with\n%v\nwant it to say %q", err, want)
	case took > 5*time.Second:
		t.Errorf("serve took %s to exit, want under 5 s", took.Round(time.Millisecond))
	}
	t.Logf("serve exited after %s: %v", took.Round(time.Millisecond), err)
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
