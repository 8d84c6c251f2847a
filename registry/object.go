package registry

import (
	"fmt"
	"iter"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
)

// Kinds the store understands (the version does not matter).
const (
	KindService             = "Service"
	KindEndpointSlice       = "EndpointSlice"
	KindPod                 = "Pod"
	KindServiceEntry        = "ServiceEntry"
	KindWorkloadEntry       = "WorkloadEntry"
	KindDestinationRule     = "DestinationRule"
	KindPeerAuthentication  = "PeerAuthentication"
	KindAuthorizationPolicy = "AuthorizationPolicy"
	KindVirtualService      = "VirtualService"
)

// Problem reasons that do not block the object.
const (
	ReasonUnknownKind = "UnknownKind"
)

// Problem reasons of host ownership.
const (
	// ReasonHostNotOwned: a ServiceEntry names the host of a Kubernetes
	// Service of another namespace (the whole object is refused).
	ReasonHostNotOwned = "HostNotOwned"
	// ReasonHostConflict: two ServiceEntries name one host; the older (or
	// the first by namespace/name) serves it, the other is ignored for it.
	ReasonHostConflict = "HostConflict"
	// ReasonAddressConflict: workloads of two namespaces have one address;
	// the older (or the first by namespace/name) is the workload there.
	ReasonAddressConflict = "AddressConflict"
)

// ObjectKey names an API object independent of its version.
type ObjectKey struct {
	Kind      string
	Namespace string
	Name      string
}

func (k ObjectKey) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

func objectID(origin string, k ObjectKey) string {
	return originPrefix(origin) + k.Kind + "\x1f" + k.Namespace + "\x1f" + k.Name
}

// originPrefix begins the ID of every object of origin, and the IDs of
// other origins only when such an origin begins with it (an origin with
// the separator in it): a scan of the ID index by this prefix, keeping the
// rows of the origin, lists the origin's objects without an index of its
// own.
func originPrefix(origin string) string { return origin + "\x1f" }

// record is what one API object contributes to the model.
type record struct {
	Services  []*serviceRow
	Endpoints []*endpointRow
	Workloads []*workloadRow
	Policies  []*policyRow
}

// rows yields each row of the record with the table it goes in; none for
// a nil record.
func (r *record) rows() iter.Seq2[string, any] {
	return func(yield func(string, any) bool) {
		if r == nil {
			return
		}
		_ = yieldRows(yield, tableServices, r.Services) && yieldRows(yield, tableEndpoints, r.Endpoints) &&
			yieldRows(yield, tableWorkloads, r.Workloads) && yieldRows(yield, tablePolicies, r.Policies)
	}
}

// yieldRows yields rows with their table; false once yield said stop.
func yieldRows[T any](yield func(string, any) bool, table string, rows []T) bool {
	for _, row := range rows {
		if !yield(table, row) {
			return false
		}
	}
	return true
}

// converter turns API objects into records. It holds the store's settings.
type converter struct {
	domainSuffix string // "cluster.local"
}

// problems collects the problems of one object.
type problems struct {
	key  ObjectKey
	list []Problem
}

func (p *problems) add(field, reason, format string, args ...any) {
	p.list = append(p.list, Problem{
		Object: p.key.String(), Field: field, Reason: reason, Message: fmt.Sprintf(format, args...),
	})
}

// blocking reports whether any problem rejects the object.
func blocking(ps []Problem) bool {
	for _, p := range ps {
		if p.Reason != ReasonUnknownKind && p.Reason != ReasonUnsupportedField && p.Reason != ReasonUnknownTLSMode && !nonBlocking[p.Reason] {
			return true
		}
	}
	return false
}

// KeyOf returns the key the registry files obj under (for sources that
// report problems before the registry sees the object).
func KeyOf(obj runtime.Object) (ObjectKey, error) { return keyOf(obj) }

// keyOf returns the object's key; an empty namespace means "default", as for kubectl.
func keyOf(obj runtime.Object) (ObjectKey, error) {
	if v := reflect.ValueOf(obj); obj == nil || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return ObjectKey{}, fmt.Errorf("nil object")
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return ObjectKey{}, fmt.Errorf("object has no metadata: %w", err)
	}
	ns := m.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	return ObjectKey{Kind: kindOf(obj), Namespace: ns, Name: m.GetName()}, nil
}

// kindOf returns the store kind of a known API type, or the type's own kind.
func kindOf(obj runtime.Object) string {
	switch obj.(type) {
	case *corev1.Service:
		return KindService
	case *discoveryv1.EndpointSlice:
		return KindEndpointSlice
	case *corev1.Pod:
		return KindPod
	case *networkingv1.ServiceEntry, *networkingv1beta1.ServiceEntry, *networkingv1alpha3.ServiceEntry:
		return KindServiceEntry
	case *networkingv1.WorkloadEntry, *networkingv1beta1.WorkloadEntry, *networkingv1alpha3.WorkloadEntry:
		return KindWorkloadEntry
	case *networkingv1.DestinationRule, *networkingv1beta1.DestinationRule, *networkingv1alpha3.DestinationRule:
		return KindDestinationRule
	case *networkingv1.Sidecar, *networkingv1beta1.Sidecar, *networkingv1alpha3.Sidecar:
		return KindSidecar
	case *securityv1.PeerAuthentication, *securityv1beta1.PeerAuthentication:
		return KindPeerAuthentication
	case *securityv1.AuthorizationPolicy, *securityv1beta1.AuthorizationPolicy:
		return KindAuthorizationPolicy
	case *networkingv1.VirtualService, *networkingv1beta1.VirtualService, *networkingv1alpha3.VirtualService:
		return KindVirtualService
	case *networkingv1.Gateway, *networkingv1beta1.Gateway, *networkingv1alpha3.Gateway:
		return KindGateway
	case *networkingv1.WorkloadGroup, *networkingv1beta1.WorkloadGroup, *networkingv1alpha3.WorkloadGroup:
		return KindWorkloadGroup
	case *corev1.Secret:
		return KindSecret
	}
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	return fmt.Sprintf("%T", obj)
}

// convert turns one API object into a record. A nil record means the object
// is rejected; the problems say why.
func (c *converter) convert(key ObjectKey, obj runtime.Object) (*record, []Problem) {
	p := &problems{key: key}
	if key.Name == "" {
		p.add("metadata.name", "MissingName", "metadata.name is required")
		return nil, p.list
	}
	var rec *record
	switch o := obj.(type) {
	case *corev1.Service:
		rec = c.service(key, o, p)
	case *discoveryv1.EndpointSlice:
		rec = c.endpointSlice(key, o, p)
	case *corev1.Pod:
		rec = c.pod(key, o, p)
	case *networkingv1.ServiceEntry:
		rec = c.serviceEntry(key, &o.Spec, p)
	case *networkingv1beta1.ServiceEntry:
		rec = c.serviceEntry(key, &o.Spec, p)
	case *networkingv1alpha3.ServiceEntry:
		rec = c.serviceEntry(key, &o.Spec, p)
	case *networkingv1.WorkloadEntry, *networkingv1beta1.WorkloadEntry, *networkingv1alpha3.WorkloadEntry:
		rec, _ = c.convertWorkloadEntry(key, obj, p)
	default:
		rec = c.convertPolicy(key, obj, p)
	}
	if len(p.list) > 0 && blocking(p.list) {
		return nil, p.list
	}
	stampCreated(rec, obj)
	return rec, p.list
}

// stampCreated gives the service and workload rows the object's creation time.
func stampCreated(rec *record, obj runtime.Object) {
	if rec == nil || len(rec.Services)+len(rec.Workloads) == 0 {
		return
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	created := m.GetCreationTimestamp().Time
	for _, r := range rec.Services {
		r.Created = created
	}
	for _, r := range rec.Workloads {
		r.Created = created
	}
}

func (c *converter) convertPolicy(key ObjectKey, obj runtime.Object, p *problems) *record {
	switch o := obj.(type) {
	case *networkingv1.DestinationRule:
		return c.destinationRule(key, &o.Spec, p)
	case *networkingv1beta1.DestinationRule:
		return c.destinationRule(key, &o.Spec, p)
	case *networkingv1alpha3.DestinationRule:
		return c.destinationRule(key, &o.Spec, p)
	case *networkingv1.Sidecar:
		return c.sidecar(key, &o.Spec, o, p)
	case *networkingv1beta1.Sidecar:
		return c.sidecar(key, &o.Spec, o, p)
	case *networkingv1alpha3.Sidecar:
		return c.sidecar(key, &o.Spec, o, p)
	case *securityv1.PeerAuthentication:
		return c.peerAuthentication(key, &o.Spec, p)
	case *securityv1beta1.PeerAuthentication:
		return c.peerAuthentication(key, &o.Spec, p)
	case *securityv1.AuthorizationPolicy:
		return c.authorizationPolicy(key, &o.Spec, p)
	case *securityv1beta1.AuthorizationPolicy:
		return c.authorizationPolicy(key, &o.Spec, p)
	}
	if rec, ok := c.convertVirtualService(key, obj, p); ok {
		return rec
	}
	if rec, ok := c.convertGateway(key, obj, p); ok {
		return rec
	}
	if rec, ok := c.convertWorkloadGroup(key, obj, p); ok {
		return rec
	}
	p.add("kind", ReasonUnknownKind, "kind %s is not used by the control plane; ignored", key.Kind)
	return nil
}
