// Package preflight checks, before `serve` starts in Kubernetes, that the
// cluster has what the server needs: its own namespace and the permissions
// of the identity it runs as. Each shortfall is named with the command that
// fixes it, so a bare cluster fails in a second instead of a timeout later.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// FixRBAC is the command that installs the server's RBAC.
const FixRBAC = "kubectl apply -k deploy/"

// Access is one permission the server uses: verb on group/resource, in
// namespace ("" for all namespaces), limited to name when set.
type Access struct {
	Verb, Group, Resource, Namespace, Name string
	// Why says what breaks without it.
	Why string
	// Required: without it the server cannot serve at all (an informer
	// that never syncs); the others degrade one feature.
	Required bool
}

func (a Access) String() string {
	res := a.Resource
	if a.Group != "" {
		res += "." + a.Group
	}
	if a.Name != "" {
		res += "/" + a.Name
	}
	where := "in all namespaces"
	if a.Namespace != "" {
		where = "in namespace " + a.Namespace
	}
	return fmt.Sprintf("%s %s %s", a.Verb, res, where)
}

// Report is the outcome of Check: Missing holds the permissions the API
// server refused; Err is set when the server cannot run (a missing
// namespace or a missing required permission).
type Report struct {
	Missing []Access
	Err     error
}

// Server is what a `serve` is set to do in Kubernetes.
type Server struct {
	CANamespace   string   // the CA's Secrets, the leader's Lease
	Watched       []string // namespaces the source watches; none for all
	LeaderElect   bool
	WebhookConfig string // the injector's MutatingWebhookConfiguration, "" when left alone
}

// Needs lists what `serve` uses: list and watch of what the Kubernetes
// source reads (cluster-wide, or in each watched namespace), the CA's
// Secrets and (with leader election) the leader's Lease, TokenReview, root
// ConfigMaps, Events, gateway credentials and the injector's webhook.
func Needs(s Server) []Access {
	scopes := s.Watched
	if len(scopes) == 0 {
		scopes = []string{""}
	}
	var out []Access
	for _, ns := range scopes {
		out = append(out, namespaceNeeds(ns)...)
	}
	if s.LeaderElect {
		out = append(out, Access{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: s.CANamespace,
			Required: true, Why: "leader election cannot start, so no replica creates the CA root"})
	}
	for _, verb := range []string{"get", "create", "update"} {
		out = append(out, Access{Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Namespace: s.CANamespace,
			Why: "this replica's heartbeat Lease cannot be kept, so other replicas take its auto-registered VMs for gone"})
	}
	if s.WebhookConfig != "" {
		out = append(out, Access{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations",
			Name: s.WebhookConfig, Why: "the injection webhook's caBundle is not set, so the API server cannot call it"})
	}
	return append(out,
		Access{Verb: "list", Resource: "namespaces", Required: true, Why: "the Kubernetes source cannot sync without it"},
		Access{Verb: "watch", Resource: "namespaces", Required: true, Why: "the Kubernetes source cannot sync without it"},
		Access{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews",
			Why: "the CA refuses every service account token (pods and pilot-agent cannot get certificates)"},
		Access{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews",
			Why: "no gateway gets a credentialName certificate (each gateway's access to Secrets is checked first)"},
		Access{Verb: "get", Resource: "secrets", Namespace: s.CANamespace, Name: "istio-ca-secret", Required: true,
			Why: "the CA root cannot be loaded"},
		Access{Verb: "create", Resource: "secrets", Namespace: s.CANamespace, Why: "the CA root cannot be created on first start"},
	)
}

// namespaceNeeds is what the server uses in namespace ns ("" for all).
func namespaceNeeds(ns string) []Access {
	var out []Access
	for _, r := range watchedResources {
		for _, verb := range []string{"list", "watch"} {
			out = append(out, Access{Verb: verb, Group: r[0], Resource: r[1], Namespace: ns, Required: true,
				Why: "the Kubernetes source cannot sync without it, so the server would never serve"})
		}
	}
	for _, verb := range []string{"list", "watch"} {
		out = append(out, Access{Verb: verb, Resource: "secrets", Namespace: ns, Why: "gateways get no credentialName certificates"})
	}
	return append(out,
		Access{Verb: "create", Resource: "configmaps", Namespace: ns, Why: "the root ConfigMap istio-ca-root-cert is not published"},
		Access{Verb: "create", Resource: "events", Namespace: ns, Why: "no Warning Events on objects the server cannot use"})
}

// watchedResources are the group and resource of every kind the Kubernetes
// source lists and watches (deploy/base/clusterrole.yaml grants them).
var watchedResources = [][2]string{
	{"", "services"}, {"", "pods"},
	{"discovery.k8s.io", "endpointslices"},
	{"networking.istio.io", "serviceentries"}, {"networking.istio.io", "workloadentries"},
	{"networking.istio.io", "workloadgroups"},
	{"networking.istio.io", "destinationrules"}, {"networking.istio.io", "sidecars"},
	{"networking.istio.io", "virtualservices"}, {"networking.istio.io", "gateways"},
	{"security.istio.io", "peerauthentications"}, {"security.istio.io", "authorizationpolicies"},
}

// Check asks the API server, as the identity client runs as, whether
// namespace exists and every permission in needs is granted. A failure to
// ask at all (the API server unreachable) is Report.Err too.
func Check(ctx context.Context, client kubernetes.Interface, namespace string, needs []Access) Report {
	var r Report
	for _, a := range needs {
		ok, err := allowed(ctx, client, a)
		if err != nil {
			r.Err = fmt.Errorf("ask the Kubernetes API server whether the server may %s: %w", a, err)
			return r
		}
		if !ok {
			r.Missing = append(r.Missing, a)
		}
	}
	var errs []error
	for _, a := range r.Missing {
		if a.Required {
			errs = append(errs, fmt.Errorf("permission missing: %s (%s); install the RBAC with `%s`", a, a.Why, FixRBAC))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, checkNamespace(ctx, client, namespace))
	}
	r.Err = errors.Join(errs...)
	return r
}

// checkNamespace reports a missing namespace with the ways to fix it.
func checkNamespace(ctx context.Context, client kubernetes.Interface, namespace string) error {
	list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", namespace).String()})
	if err != nil {
		return fmt.Errorf("look up namespace %s: %w", namespace, err)
	}
	if len(list.Items) == 0 {
		return fmt.Errorf("namespace %q does not exist: it holds the CA root Secret and the leader Lease; "+
			"create it with `kubectl create namespace %s` (or install everything with `%s`), "+
			"or run the server in another namespace with --ca-namespace", namespace, namespace, FixRBAC)
	}
	return nil
}

// allowed asks with a SelfSubjectAccessReview, which every authenticated
// identity may create.
func allowed(ctx context.Context, client kubernetes.Interface, a Access) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: a.Verb, Group: a.Group, Resource: a.Resource, Namespace: a.Namespace, Name: a.Name},
	}}
	got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return got.Status.Allowed, nil
}

// LogMissing logs each missing permission the server can run without.
func (r Report) LogMissing(logger *slog.Logger) {
	for _, a := range r.Missing {
		if !a.Required {
			logger.Warn("permission missing; the server runs without it", "permission", a.String(), "effect", a.Why, "fix", FixRBAC)
		}
	}
}
