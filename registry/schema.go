package registry

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The memdb schema. Every API object a source writes is one objectRow
// (keyed by origin, kind, namespace and name, so "kube" and a file may both
// define an object); what it contributes to the model are derived rows in
// the other tables, all carrying the objectRow's ID and origin (for the
// problems they name), replaced together in one transaction through the
// objectRow's record:
//
//	services   one row per host of a Service or ServiceEntry; by hostname and
//	           namespace of a workloadSelector
//	endpoints  EndpointSlice and ServiceEntry endpoints; by hostname, address, pod
//	workloads  Pods, WorkloadEntries and ServiceEntry IP endpoints; by address, namespace, pod
//	policies   PeerAuthentications, DestinationRules and the other policy kinds
//
// A table has only the indexes some read uses: each index entry costs a few
// hundred bytes of radix tree, which at 10,000 services was most of the
// server's heap.
//
// Merging (a Service and ServiceEntries of one host, workloadSelector
// picks, pod identities) happens when a view is built, for the hosts a
// write touched (see update.go).

// memdb table and index names.
const (
	tableObjects   = "objects"   // one row per source object (objectRow)
	tableServices  = "services"  // one row per (object, host) (serviceRow)
	tableEndpoints = "endpoints" // EndpointSlice and ServiceEntry endpoints (endpointRow)
	tableWorkloads = "workloads" // Pods, WorkloadEntries, ServiceEntry endpoints (workloadRow)
	tablePolicies  = "policies"  // PeerAuthentications, DestinationRules and the other policy kinds (policyRow)

	indexID        = "id"
	indexHostname  = "hostname"
	indexNamespace = "namespace"
	indexAddress   = "address"
	indexPod       = "pod"      // endpoints by targetRef Pod, pods by "ns/name"
	indexSelector  = "selector" // ServiceEntry hosts with a workloadSelector, by namespace
)

// objectRow is one API object as the store last accepted it.
type objectRow struct {
	ID     string // objectID(origin, key)
	Origin string
	Key    ObjectKey
	Source string // where it was read, e.g. "file.yaml:12"
	Rec    *record
}

// serviceRow is one host of a Kubernetes Service or a ServiceEntry.
type serviceRow struct {
	ID        string
	Object    string // objectRow.ID
	Origin    string
	Kind      string // "Service" or "ServiceEntry"
	Namespace string
	Name      string
	Hostname  string
	// Addresses, Ports, Resolution and Location as in Service.
	Addresses  []string
	Ports      []Port
	Resolution Resolution
	Location   Location
	// SubjectAltNames from a ServiceEntry.
	SubjectAltNames []string
	// HostField is where the host was named, e.g. "spec.hosts[1]".
	HostField string
	// Created is the object's creationTimestamp (zero when unknown, as in
	// a file): of two ServiceEntries naming a host, the older wins.
	Created time.Time
	// ExportTo is the object's exportTo with "." resolved, sorted; empty
	// means every namespace.
	ExportTo []string
	// Selector is a ServiceEntry workloadSelector (nil: none), or a
	// Kubernetes Service selector (informational).
	Selector    map[string]string
	UseSelector bool // the selector picks WorkloadEntries and Pods
	// SelectorNamespace is Namespace when UseSelector, else empty.
	SelectorNamespace string
}

// endpointRow is an endpoint that a source lists explicitly.
type endpointRow struct {
	ID       string
	Object   string
	Origin   string
	Hostname string
	Address  string
	PodRef   string // "ns/name" of an EndpointSlice targetRef Pod
	Endpoint *Endpoint
}

// workloadRow is a workload that can be found by address.
type workloadRow struct {
	ID        string
	Object    string
	Origin    string
	Namespace string
	Addresses []string
	PodRef    string // "ns/name" for a Pod
	Ready     bool
	Weight    uint32
	Workload  *Workload
	// Field is where the address was given, e.g. "spec.endpoints[0].address".
	Field string
	// Created is the object's creationTimestamp (zero when unknown): of
	// workloads of one kind at one address, the older wins.
	Created time.Time
}

// policyRow is a PeerAuthentication, a DestinationRule or an AuthorizationPolicy.
type policyRow struct {
	ID        string
	Object    string
	Origin    string
	Namespace string
	PeerAuth  *PeerAuthentication
	DestRule  *DestinationRule
	Sidecar   *Sidecar
	Authz     *AuthorizationPolicy
	// VirtualService is set for a VirtualService (see virtualservice.go).
	VirtualService *VirtualService
	// Gateway and Credential (a Secret's TLS material) are set for those
	// kinds (see gateway.go).
	Gateway    *Gateway
	Credential *Credential
	// WorkloadGroup is set for a WorkloadGroup (see workloadgroup.go).
	WorkloadGroup *WorkloadGroup
}

func idIndex() *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}}
}

func fieldIndex(name, field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: field}}
}

func table(name string, extra ...*memdb.IndexSchema) *memdb.TableSchema {
	t := &memdb.TableSchema{Name: name, Indexes: map[string]*memdb.IndexSchema{indexID: idIndex()}}
	for _, ix := range extra {
		t.Indexes[ix.Name] = ix
	}
	return t
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableObjects: table(tableObjects), // by origin: a prefix of the ID (originPrefix)
		tableServices: table(tableServices,
			fieldIndex(indexHostname, "Hostname"), fieldIndex(indexSelector, "SelectorNamespace")),
		tableEndpoints: table(tableEndpoints,
			fieldIndex(indexHostname, "Hostname"), fieldIndex(indexAddress, "Address"),
			fieldIndex(indexPod, "PodRef")),
		tableWorkloads: table(tableWorkloads,
			fieldIndex(indexNamespace, "Namespace"), fieldIndex(indexPod, "PodRef"),
			&memdb.IndexSchema{Name: indexAddress, AllowMissing: true, Indexer: &memdb.StringSliceFieldIndex{Field: "Addresses"}}),
		tablePolicies: table(tablePolicies),
	}}
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("registry: invalid memdb schema: %v", err)) // a programming error
	}
	return db
}
