package registry

import (
	"cmp"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// KindWorkloadGroup is Istio's WorkloadGroup (networking.istio.io v1,
// v1beta1, v1alpha3): the template of the WorkloadEntries of a group of VMs
// that register themselves when they connect.
const KindWorkloadGroup = "WorkloadGroup"

// Kubernetes' probe defaults, which Istio's WorkloadGroup probe follows.
const (
	DefaultProbePeriod           = 10 * time.Second
	DefaultProbeTimeout          = time.Second
	DefaultProbeSuccessThreshold = 1
	DefaultProbeFailureThreshold = 3
)

// WorkloadGroup is the template VMs of a group register from.
type WorkloadGroup struct {
	Namespace string
	Name      string
	// Labels and Annotations are spec.metadata: they go on every
	// WorkloadEntry made from the group (labels over the template's).
	Labels      map[string]string
	Annotations map[string]string
	// Template is spec.template without an address (each VM brings its own).
	Template WorkloadTemplate
	// Probe is spec.probe; nil when the group has none (its VMs are healthy
	// while connected).
	Probe *Probe
	// UID is the object's Kubernetes UID (the owner of the WorkloadEntries
	// made from it); empty in a file.
	UID string
	// APIVersion is the object's apiVersion, e.g. "networking.istio.io/v1".
	APIVersion string
	// Created is the object's creationTimestamp (zero when unknown).
	Created time.Time
}

// Ref is "namespace/name".
func (g *WorkloadGroup) Ref() string { return g.Namespace + "/" + g.Name }

// WorkloadTemplate is a WorkloadGroup's spec.template.
type WorkloadTemplate struct {
	Labels         map[string]string
	Ports          map[string]uint32
	ServiceAccount string
	Network        string
	Locality       string
	Weight         uint32
}

// Probe is a WorkloadGroup's readiness probe, with Kubernetes semantics:
// the first run after InitialDelay, then every Period, each given Timeout;
// SuccessThreshold passes in a row make the workload healthy and
// FailureThreshold failures in a row unhealthy. Exactly one of HTTPGet,
// TCPSocket and Exec is set. Unset durations and thresholds hold the
// defaults (DefaultProbe*).
type Probe struct {
	InitialDelay     time.Duration
	Timeout          time.Duration
	Period           time.Duration
	SuccessThreshold int
	FailureThreshold int
	HTTPGet          *HTTPGetProbe
	TCPSocket        *TCPSocketProbe
	Exec             *ExecProbe
}

// HTTPGetProbe passes on an HTTP status from 200 to 399.
type HTTPGetProbe struct {
	Path    string
	Port    uint32
	Host    string // "" is the local host
	Scheme  string // "HTTP" or "HTTPS"
	Headers []HTTPHeader
}

// HTTPHeader is one header a probe sends.
type HTTPHeader struct {
	Name  string
	Value string
}

// TCPSocketProbe passes when a connection opens.
type TCPSocketProbe struct {
	Host string // "" is the local host
	Port uint32
}

// ExecProbe passes when the command exits 0.
type ExecProbe struct {
	Command []string
}

// WorkloadGroups returns every WorkloadGroup, by namespace/name.
func (v *view) WorkloadGroups() []*WorkloadGroup { return v.groups }

// WorkloadGroup returns the WorkloadGroup namespace/name, or nil.
func (v *view) WorkloadGroup(namespace, name string) *WorkloadGroup {
	i, ok := slices.BinarySearchFunc(v.groups, namespace+"/"+name, func(g *WorkloadGroup, ref string) int {
		return cmp.Compare(g.Ref(), ref)
	})
	if !ok {
		return nil
	}
	return v.groups[i]
}

// collectWorkloadGroups reads the WorkloadGroups of the policies table; of
// one namespace/name defined by several origins the first by ID wins.
func collectWorkloadGroups(txn *memdb.Txn) []*WorkloadGroup {
	var out []*WorkloadGroup
	seen := map[string]bool{}
	it, err := txn.Get(tablePolicies, indexID)
	must(err)
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if g := obj.(*policyRow).WorkloadGroup; g != nil && !seen[g.Ref()] {
			seen[g.Ref()] = true
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *WorkloadGroup) int { return cmp.Compare(a.Ref(), b.Ref()) })
	return out
}
