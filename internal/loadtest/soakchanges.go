package loadtest

import (
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Kinds of soak changes.
const (
	soakEndpoint = "endpoint"
	soakNew      = "new-service"
	soakRemoved  = "removed-service"
	soakPolicy   = "policy"
)

// soakMesh makes the soak's changes, in a steady mix: of every ten, six
// move a pod endpoint, two change a DestinationRule (a new subset), one
// adds a Service and one removes a Service added earlier, so the mesh
// keeps its size.
type soakMesh struct {
	*mesh
	n, endpoints, policies, added int
	created                       []*soakChange // new-service changes not yet removed, oldest first
	lastPolicy                    map[int]*soakChange
}

// next returns the next change, not yet applied, and the edit that applies it.
func (m *soakMesh) next() (*soakChange, func() error) {
	k := m.n
	m.n++
	switch k % 10 {
	case 1, 5:
		return m.policy()
	case 3:
		return m.newService()
	case 9:
		if len(m.created) > 0 && m.created[0].left.Load() == 0 {
			return m.removeService()
		}
	}
	return m.endpoint()
}

// endpoint moves one pod of a Kubernetes Service to a new IP. Services and
// pods are taken in turn, so a change is never overtaken by the next one
// of the same endpoint.
func (m *soakMesh) endpoint() (*soakChange, func() error) {
	k := m.endpoints
	m.endpoints++
	s, j := k%m.sc.kube(), (k/m.sc.kube())%4
	ip := fmt.Sprintf("10.%d.%d.%d", 200+k/62500, (k/250)%250, k%250+1)
	c := &soakChange{kind: soakEndpoint, what: fmt.Sprintf("svc-%d pod %d -> %s", s, j, ip), typeURL: resourcev3.EndpointType,
		host: fmt.Sprintf("svc-%d.default.svc.cluster.local", s), text: []byte(ip)}
	return c, func() error { m.pods[s][j] = ip; return m.writeService(s) }
}

// policy gives a Service's DestinationRule a new subset: every proxy gets
// a new subset cluster.
func (m *soakMesh) policy() (*soakChange, func() error) {
	k := m.policies
	m.policies++
	// A few Services take turns, so the mesh keeps its size (each has one
	// subset at a time) and the heap slope measures the server, not growth.
	s := k % min(policyServices, m.sc.kube())
	d := policyData{Service: fmt.Sprintf("svc-%d", s), Subset: fmt.Sprintf("s%d", k)}
	c := &soakChange{kind: soakPolicy, what: fmt.Sprintf("svc-%d DestinationRule subset %s", s, d.Subset), typeURL: resourcev3.ClusterType,
		host: d.Service + ".default.svc.cluster.local", text: []byte("|" + d.Subset + "|")}
	if m.lastPolicy == nil {
		m.lastPolicy = map[int]*soakChange{}
	}
	c.prev, m.lastPolicy[s] = m.lastPolicy[s], c
	return c, func() error { return writeTemplate(m.dir, "dr-"+d.Service+".yaml", policyTmpl, d) }
}

// newService adds a Service with 4 pods.
func (m *soakMesh) newService() (*soakChange, func() error) {
	k := m.added
	m.added++
	d := serviceData{Name: fmt.Sprintf("soak-svc-%d", k), VIP: fmt.Sprintf("10.94.%d.%d", k/250, k%250+1), Port: 7000 + k%50}
	for j := range 4 {
		d.IPs = append(d.IPs, fmt.Sprintf("10.%d.%d.%d", 150+j, k/250, k%250+1))
	}
	c := &soakChange{kind: soakNew, what: "new Service " + d.Name, typeURL: resourcev3.ClusterType, host: d.Name + ".default.svc.cluster.local"}
	return c, func() error {
		m.created = append(m.created, c)
		return writeTemplate(m.dir, d.Name+".yaml", serviceTmpl, d)
	}
}

// removeService removes the oldest Service the soak added (once every
// proxy has it, so the two changes never race).
func (m *soakMesh) removeService() (*soakChange, func() error) {
	added := m.created[0]
	m.created = m.created[1:]
	name := added.host[:len(added.host)-len(".default.svc.cluster.local")]
	c := &soakChange{kind: soakRemoved, what: "removed Service " + name, typeURL: resourcev3.ClusterType, host: added.host, absent: true}
	return c, func() error {
		if err := os.Remove(filepath.Join(m.dir, name+".yaml")); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		return nil
	}
}

// policyServices is how many Services the policy changes take turns on.
const policyServices = 20

type policyData struct{ Service, Subset string }

// policyTmpl is a DestinationRule with one subset of a Service's pods.
var policyTmpl = template.Must(template.New("dr").Parse(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: {{.Service}}, namespace: default}
spec:
  host: {{.Service}}.default.svc.cluster.local
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: {{.Subset}}
    labels: {app: {{.Service}}}
`))
