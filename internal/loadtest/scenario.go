// Package loadtest measures the push path at scale: it writes a mesh into a
// YAML folder, runs a control plane on it as its own process, connects many
// Envoy-like ADS streams (state-of-the-world or delta) that ACK every
// response, edits the folder, and records how long each proxy takes to ACK
// the change, with the server's memory and CPU. A baseline server (a
// go-control-plane SnapshotCache fed a full per-proxy snapshot on every
// change) runs under the same client for comparison.
package loadtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/librarymesh/controlplane/meshname"
)

// Scenario is the size of the mesh and of the proxy fleet. Half of the
// services are Kubernetes Services with 4 pod endpoints (EndpointSlices),
// half ServiceEntries with 2 VM endpoints; 80% of the proxies are pod
// sidecars, 20% VM sidecars.
type Scenario struct {
	Services          int
	Proxies           int
	EndpointChanges   int
	NewServiceChanges int
	// ScopeSize, when set, scopes every proxy with a Sidecar to that many
	// services (see scope.go); 0: no Sidecar, every proxy sees every service.
	ScopeSize int `json:",omitempty"`
	// HTTPEntries, when set, makes every service an HTTP ServiceEntry on
	// port 8080 without addresses, with 2 VM endpoints, and every proxy a
	// VM sidecar of one (issue 20's case): one listener, 0.0.0.0_8080, and
	// one route configuration, 8080, that holds every virtual host. New
	// services are such entries too.
	HTTPEntries bool `json:",omitempty"`
	// ConnectConcurrency, when set, is how many proxies connect at a time:
	// a proxy opens its stream once fewer than that many are connecting
	// and not yet configured. At L every proxy is sent every cluster and
	// endpoint set (about 30 MB); all 2,000 at once would make the load
	// client hold 60 GB and starve its connections' readers.
	ConnectConcurrency int `json:",omitempty"`
	// SotWEndpointChangesOnly leaves out the new services in SotW mode:
	// at L one sends every proxy every cluster again (10 MB each, 20 GB a
	// change), more than the load client can take in at once. Delta mode
	// still gets them.
	SotWEndpointChangesOnly bool `json:",omitempty"`
	podsPerService          int
	vmsPerServiceEntry      int
}

// ScenarioS is issue 7's scenario: 1000 services, 1000 proxies, 20
// endpoint changes and 5 new services.
func ScenarioS() Scenario {
	return Scenario{Services: 1000, Proxies: 1000, EndpointChanges: 20, NewServiceChanges: 5}
}

// ScenarioL is issue 20's scale scenario: 10,000 services (the mix of S),
// 2,000 proxies; the server's RSS must stay within 1 GB.
func ScenarioL() Scenario {
	return Scenario{Services: 10000, Proxies: 2000, EndpointChanges: 10, NewServiceChanges: 3,
		ConnectConcurrency: 16, SotWEndpointChangesOnly: true}
}

// ScenarioSmall is the version `make test` runs.
func ScenarioSmall() Scenario {
	return Scenario{Services: 50, Proxies: 50, EndpointChanges: 4, NewServiceChanges: 2}
}

// ScenarioHTTPEntries is ScenarioS with HTTPEntries.
func ScenarioHTTPEntries() Scenario {
	s := ScenarioS()
	s.HTTPEntries = true
	return s
}

func (s Scenario) kube() int {
	if s.HTTPEntries {
		return 0
	}
	return s.Services / 2
}

func (s Scenario) entries() int { return s.Services - s.kube() }

// httpEntryPort is the port of every ServiceEntry of HTTPEntries.
const httpEntryPort = 8080

// mesh is the generated folder and what it holds, so changes can rewrite
// one file.
type mesh struct {
	dir  string
	sc   Scenario
	pods [][]string // per Kubernetes service, its pod IPs
	vms  [][]string // per ServiceEntry, its VM IPs
	// apply, when set, makes changes through an API server (istiod's
	// source) instead of the folder: it applies the objects of a file.
	apply func(yaml []byte) error
}

func podIP(svc, j int) string { return fmt.Sprintf("10.%d.%d.%d", 8+j, svc/250, svc%250+1) }
func vmIP(se, j int) string   { return fmt.Sprintf("10.%d.%d.%d", 32+j, se/250, se%250+1) }

// writeMesh generates the scenario's folder under dir.
func writeMesh(dir string, sc Scenario) (*mesh, error) {
	sc.podsPerService, sc.vmsPerServiceEntry = 4, 2
	m := &mesh{dir: dir, sc: sc}
	if err := os.WriteFile(filepath.Join(dir, "mesh-policy.yaml"), []byte(policyYAML), 0o644); err != nil {
		return nil, fmt.Errorf("write policy: %w", err)
	}
	if err := m.writeSidecars(); err != nil {
		return nil, err
	}
	for i := range sc.kube() {
		ips := make([]string, sc.podsPerService)
		for j := range ips {
			ips[j] = podIP(i, j)
		}
		m.pods = append(m.pods, ips)
		if err := m.writeService(i); err != nil {
			return nil, err
		}
	}
	for i := range sc.entries() {
		ips := make([]string, sc.vmsPerServiceEntry)
		for j := range ips {
			ips[j] = vmIP(i, j)
		}
		m.vms = append(m.vms, ips)
		if err := m.writeEntry(i); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// serviceData fills the templates.
type serviceData struct {
	Name, VIP string
	Port      int
	IPs       []string
	Group     string // the workloads' scope group label ("" when unscoped)
}

func (m *mesh) writeService(i int) error {
	d := serviceData{Name: fmt.Sprintf("svc-%d", i), VIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), Port: 8000 + i%50, IPs: m.pods[i],
		Group: m.groupLabel(i)}
	return m.write(d.Name+".yaml", serviceTmpl, d)
}

func (m *mesh) writeEntry(i int) error {
	d := serviceData{Name: fmt.Sprintf("vm-%d", i), VIP: fmt.Sprintf("10.97.%d.%d", i/250, i%250+1), Port: 9000 + i%50, IPs: m.vms[i],
		Group: m.groupLabel(i)}
	if m.sc.HTTPEntries {
		d.VIP, d.Port = "", httpEntryPort
		return m.write(d.Name+".yaml", httpEntryTmpl, d)
	}
	return m.write(d.Name+".yaml", entryTmpl, d)
}

// write renders a file of the mesh into its folder or, once the mesh is
// served from an API server, applies its objects there.
func (m *mesh) write(name string, t *template.Template, data any) error {
	if m.apply == nil {
		return writeTemplate(m.dir, name, t, data)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	if err := m.apply(b.Bytes()); err != nil {
		return fmt.Errorf("apply %s: %w", name, err)
	}
	return nil
}

// writeTemplate renders into a temporary file outside the watched folder
// and renames it in, so the watcher never reads half a file.
func writeTemplate(dir, name string, t *template.Template, data any) error {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dir), ".loadtest-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// ProxySpec is one simulated proxy: an Istio node ID and metadata.
type ProxySpec struct {
	ID   string
	Kind string // pod or vm
	Node *corev3.Node
	// Group is the proxy's scope group (see scope.go); -1 when unscoped.
	Group int
}

// proxies returns the fleet: pod sidecars on the first pods of each
// service, VM sidecars on the first VM of each ServiceEntry.
func (m *mesh) proxies() []ProxySpec {
	pods := m.sc.Proxies * 8 / 10
	if m.sc.kube() == 0 {
		pods = 0
	}
	var out []ProxySpec
	for k := range pods {
		svc, j := k%m.sc.kube(), k/m.sc.kube()
		name := fmt.Sprintf("svc-%d-pod-%d", svc, j)
		out = append(out, m.proxySpec("pod", m.pods[svc][j], name, fmt.Sprintf("svc-%d", svc), "Kubernetes", svc))
	}
	for k := range m.sc.Proxies - pods {
		se, j := k%m.sc.entries(), k/m.sc.entries()
		name := fmt.Sprintf("vm-%d-%d", se, j)
		out = append(out, m.proxySpec("vm", m.vms[se][j], name, fmt.Sprintf("vm-%d", se), "vm-network", se))
	}
	return out
}

// proxySpec is a proxy of app, the i-th service of its kind.
func (m *mesh) proxySpec(kind, ip, name, app, cluster string, i int) ProxySpec {
	id := meshname.SidecarNodeID(ip, name, "default", "")
	labels := map[string]any{"app": app}
	if g := m.groupLabel(i); g != "" {
		labels["group"] = g
	}
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": "default", "SERVICE_ACCOUNT": app, "LABELS": labels,
		"INSTANCE_IPS": ip, "WORKLOAD_NAME": app, "INTERCEPTION_MODE": "REDIRECT",
		"CLUSTER_ID": cluster, "ISTIO_VERSION": "1.28.0",
	})
	return ProxySpec{ID: id, Kind: kind, Group: m.group(i), Node: &corev3.Node{Id: id, Cluster: app + ".default", Metadata: md,
		UserAgentName: "envoy", Locality: &corev3.Locality{}}}
}
