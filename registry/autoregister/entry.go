package autoregister

import (
	"fmt"
	"maps"
	"strings"
	"time"

	metaapi "istio.io/api/meta/v1alpha1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/librarymesh/controlplane/registry"
)

// Istio's annotations and condition for auto-registered WorkloadEntries
// (pilot/pkg/autoregistration), so istioctl and Istio's own tools read ours.
const (
	// AnnotationGroup names the WorkloadGroup an entry was made from; only
	// entries carrying it are ever changed or deleted.
	AnnotationGroup = "istio.io/autoRegistrationGroup"
	// AnnotationController names the replica holding the workload's connection.
	AnnotationController = "istio.io/workloadController"
	// AnnotationConnectedAt is when the workload connected (RFC 3339, nanoseconds).
	AnnotationConnectedAt = "istio.io/connectedAt"
	// AnnotationDisconnectedAt is when its last connection closed.
	AnnotationDisconnectedAt = "istio.io/disconnectedAt"
	// AnnotationHealthChecks ("true") makes the Healthy condition count:
	// set when the group has a probe.
	AnnotationHealthChecks = registry.AnnotationHealthChecks
	// ConditionHealthy is the status condition the agent's reports set.
	ConditionHealthy = registry.ConditionHealthy

	timeFormat = time.RFC3339Nano
)

// Workload is a connecting proxy of a WorkloadGroup: what its node says and
// the identity it proved.
type Workload struct {
	ProxyID   string // the node ID, for messages
	Group     string // AUTO_REGISTER_GROUP
	Namespace string
	IP        string // the node ID's IP: the entry's address
	Network   string // NETWORK metadata (overrides the template's)
	Locality  string // the node's locality (overrides the template's)
	Labels    map[string]string
	// ServiceAccount is the proven service account (of Namespace).
	ServiceAccount string
}

// EntryName is Istio's name for a workload's entry: GROUP-IP[-NETWORK],
// with the colons of an IPv6 address as dashes, cut to 253 characters from
// the start.
func EntryName(group, ip, network string) string {
	parts := []string{group, strings.ReplaceAll(ip, ":", "-")}
	if network != "" {
		parts = append(parts, network)
	}
	name := strings.Join(parts, "-")
	if len(name) > 253 {
		name = name[len(name)-253:]
	}
	return name
}

// newEntry makes the WorkloadEntry of w from its group: the template with
// w's address, labels (template < group metadata < the proxy's), network
// and locality, the group's annotations plus Istio's, owned by the group
// when it has a UID.
func newEntry(g *registry.WorkloadGroup, w Workload, name, instance string, now time.Time) *networkingv1.WorkloadEntry {
	t := g.Template
	labels := map[string]string{}
	for _, m := range []map[string]string{t.Labels, g.Labels, w.Labels} {
		maps.Copy(labels, m)
	}
	sa := t.ServiceAccount
	if sa == "" {
		sa = w.ServiceAccount // the proven one: the entry's endpoints serve as it
	}
	ann := maps.Clone(g.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationGroup] = g.Name
	if g.Probe != nil {
		ann[AnnotationHealthChecks] = "true"
	}
	we := &networkingv1.WorkloadEntry{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: "WorkloadEntry"},
		ObjectMeta: metav1.ObjectMeta{Namespace: g.Namespace, Name: name, Labels: maps.Clone(labels), Annotations: ann},
	}
	s := &we.Spec
	s.Address, s.Ports, s.Labels, s.ServiceAccount = w.IP, maps.Clone(t.Ports), labels, sa
	s.Network, s.Locality, s.Weight = firstOf(w.Network, t.Network), firstOf(w.Locality, t.Locality), t.Weight
	if g.UID != "" {
		yes := true
		we.OwnerReferences = []metav1.OwnerReference{{APIVersion: "networking.istio.io/v1", Kind: registry.KindWorkloadGroup,
			Name: g.Name, UID: types.UID(g.UID), Controller: &yes}}
	}
	setConnected(we, instance, now)
	return we
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// setConnected records that replica instance holds the connection since at.
func setConnected(we *networkingv1.WorkloadEntry, instance string, at time.Time) {
	if we.Annotations == nil {
		we.Annotations = map[string]string{}
	}
	we.Annotations[AnnotationController] = instance
	we.Annotations[AnnotationConnectedAt] = at.UTC().Format(timeFormat)
	delete(we.Annotations, AnnotationDisconnectedAt)
}

// setDisconnected records that the last connection closed at.
func setDisconnected(we *networkingv1.WorkloadEntry, at time.Time) {
	delete(we.Annotations, AnnotationConnectedAt)
	we.Annotations[AnnotationDisconnectedAt] = at.UTC().Format(timeFormat)
}

// annotationTime reads a time annotation; zero when absent or malformed.
func annotationTime(we *networkingv1.WorkloadEntry, key string) time.Time {
	t, err := time.Parse(timeFormat, we.Annotations[key])
	if err != nil {
		return time.Time{}
	}
	return t
}

// isAutoRegistered reports whether the entry was made from a group (and so
// may be changed and deleted by the controller).
func isAutoRegistered(we *networkingv1.WorkloadEntry) bool {
	return we.Annotations[AnnotationGroup] != ""
}

// setHealth sets the Healthy condition; it reports false when the entry
// already says the same.
func setHealth(we *networkingv1.WorkloadEntry, healthy bool, message string, now time.Time) bool {
	status, msg := "False", message
	if healthy {
		status, msg = "True", ""
	}
	conds := we.Status.GetConditions()
	for _, c := range conds {
		if c.GetType() == ConditionHealthy {
			if c.GetStatus() == status && c.GetMessage() == msg {
				return false
			}
			c.Status, c.Message = status, msg
			c.LastProbeTime, c.LastTransitionTime = timestamp(now), timestamp(now)
			return true
		}
	}
	we.Status.Conditions = append(conds, &metaapi.IstioCondition{Type: ConditionHealthy, Status: status, Message: msg,
		LastProbeTime: timestamp(now), LastTransitionTime: timestamp(now)})
	return true
}

// describe is "WorkloadEntry ns/name" for messages.
func describe(ns, name string) string { return fmt.Sprintf("WorkloadEntry %s/%s", ns, name) }
