// Package register builds the objects that join a VM to the mesh (what
// `istioctl register` did) and writes them to Kubernetes or a YAML folder.
package register

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/librarymesh/controlplane/meshname"
)

// Shape is the form of objects a VM is registered as.
type Shape string

// Shapes.
const (
	// AsServiceEntry is a ServiceEntry (MESH_INTERNAL, STATIC, the VM as
	// endpoint) plus a selector-less Service so NAME.NS.svc.cluster.local resolves.
	AsServiceEntry Shape = "serviceentry"
	// AsWorkloadEntry is a WorkloadEntry selected by an existing ServiceEntry or Service.
	AsWorkloadEntry Shape = "workloadentry"
	// AsService is a selector-less Service plus an EndpointSlice with the VM IP.
	AsService Shape = "service"
)

// ManagedByLabel marks the objects register wrote; deregister only deletes those.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "controlplane-register"
)

// protocols are the Istio protocols a VM port may declare.
var protocols = []string{"HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO", "MYSQL", "REDIS", "UDP"}

// Port is one port the VM serves.
type Port struct {
	Number   int32
	Name     string // a Kubernetes port name, e.g. "tcp" or "http-api"
	Protocol string // an Istio protocol, upper case, e.g. "TCP"
}

// VM is one VM to register.
type VM struct {
	Name           string
	Namespace      string
	IP             string
	Ports          []Port
	ServiceAccount string
	Labels         map[string]string
	Locality       string // region/zone/subzone, "" for none
	As             Shape
}

// Args are the command line arguments: NAME IP PORT[:NAME[/PROTOCOL]]...
type Args struct {
	Positional     []string
	Namespace      string
	ServiceAccount string
	Labels         string // k=v,k2=v2
	Locality       string // region[/zone[/subzone]]
	As             string // default serviceentry
}

// Parse checks the arguments and returns the VM. Every problem is reported
// before anything is written.
func Parse(a Args) (*VM, error) {
	if len(a.Positional) < 3 {
		return nil, fmt.Errorf("want NAME IP PORT[:NAME[/PROTOCOL]]..., got %d argument(s)", len(a.Positional))
	}
	vm := &VM{Name: a.Positional[0], IP: a.Positional[1], Namespace: a.Namespace, ServiceAccount: a.ServiceAccount,
		Locality: a.Locality, As: Shape(a.As)}
	if vm.Namespace == "" {
		vm.Namespace = "default"
	}
	if vm.As == "" {
		vm.As = AsServiceEntry
	}
	labels, err := ParseLabels(a.Labels)
	if err != nil {
		return nil, err
	}
	vm.Labels = labels
	for _, s := range a.Positional[2:] {
		p, err := ParsePort(s)
		if err != nil {
			return nil, err
		}
		vm.Ports = append(vm.Ports, p)
	}
	if err := vm.Validate(); err != nil {
		return nil, err
	}
	return vm, nil
}

// Validate checks names, the IP, ports, labels and the shape.
func (vm *VM) Validate() error {
	if errs := validation.IsDNS1123Label(vm.Name); len(errs) > 0 {
		return fmt.Errorf("name %q is not a DNS label: %s", vm.Name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(vm.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q is not a DNS label: %s", vm.Namespace, strings.Join(errs, "; "))
	}
	if vm.ServiceAccount == "" {
		return fmt.Errorf("service account is empty (use --service-account)")
	}
	if errs := validation.IsDNS1123Subdomain(vm.ServiceAccount); len(errs) > 0 {
		return fmt.Errorf("service account %q is not a DNS name: %s", vm.ServiceAccount, strings.Join(errs, "; "))
	}
	addr, err := netip.ParseAddr(vm.IP)
	if err != nil || addr.Zone() != "" {
		return fmt.Errorf("IP %q is not an IP address", vm.IP)
	}
	vm.IP = addr.String()
	switch vm.As {
	case AsServiceEntry, AsWorkloadEntry, AsService:
	default:
		return fmt.Errorf("--as %q: want serviceentry, workloadentry or service", vm.As)
	}
	if err := checkLocality(vm.Locality, vm.As); err != nil {
		return err
	}
	return checkPorts(vm.Ports)
}

// checkLocality checks a VM's region[/zone[/subzone]], which only a
// ServiceEntry endpoint or a WorkloadEntry can carry.
func checkLocality(l string, as Shape) error {
	if l == "" {
		return nil
	}
	if as == AsService {
		return fmt.Errorf("--locality %q: an EndpointSlice cannot carry a locality; register --as serviceentry or workloadentry", l)
	}
	parts := strings.Split(l, "/")
	if len(parts) > 3 || slices.Contains(parts, "") || strings.ContainsAny(l, "* \t") {
		return fmt.Errorf("--locality %q: want region, region/zone or region/zone/subzone (no empty part, no wildcard)", l)
	}
	return nil
}

func checkPorts(ports []Port) error {
	if len(ports) == 0 {
		return fmt.Errorf("at least one port is needed")
	}
	names, numbers := map[string]bool{}, map[int32]bool{}
	for _, p := range ports {
		if names[p.Name] {
			return fmt.Errorf("port name %q is used twice", p.Name)
		}
		if numbers[p.Number] {
			return fmt.Errorf("port %d is listed twice", p.Number)
		}
		names[p.Name], numbers[p.Number] = true, true
	}
	return nil
}

// ParsePort reads PORT[:NAME[/PROTOCOL]]. Without a protocol it comes from
// the name's prefix as in Istio (http-api is HTTP), else TCP. Without a name
// it is the protocol in lower case.
func ParsePort(s string) (Port, error) {
	num, rest, hasName := strings.Cut(s, ":")
	n, err := strconv.Atoi(num)
	if err != nil {
		return Port{}, fmt.Errorf("port %q: %q is not a number", s, num)
	}
	if n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("port %q: %d is out of range 1-65535", s, n)
	}
	p := Port{Number: int32(n)}
	name, proto, hasProto := strings.Cut(rest, "/")
	if hasProto {
		up := strings.ToUpper(proto)
		if !knownProtocol(up) {
			return Port{}, fmt.Errorf("port %q: unknown protocol %q (want one of %s)", s, proto, strings.Join(protocols, ", "))
		}
		p.Protocol = up
	}
	p.Name = name
	if p.Protocol == "" {
		p.Protocol = protocolFromName(name)
	}
	if !hasName || name == "" {
		p.Name = strings.ToLower(p.Protocol)
	}
	if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
		return Port{}, fmt.Errorf("port %q: name %q is not a valid port name: %s", s, p.Name, strings.Join(errs, "; "))
	}
	return p, nil
}

func knownProtocol(up string) bool {
	for _, k := range protocols {
		if k == up {
			return true
		}
	}
	return false
}

func protocolFromName(name string) string {
	prefix, _, _ := strings.Cut(name, "-")
	if up := strings.ToUpper(prefix); knownProtocol(up) {
		return up
	}
	return "TCP"
}

// ParseLabels reads k=v,k2=v2.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("label %q is not KEY=VALUE", kv)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("label %q value %q: %s", k, v, strings.Join(errs, "; "))
		}
		out[k] = v
	}
	return out, nil
}

// Hostname is the service host the VM serves: NAME.NS.svc.cluster.local.
func (vm *VM) Hostname() string { return vm.Name + "." + vm.Namespace + ".svc.cluster.local" }

// workloadLabels are the VM's labels with app=NAME unless the user set app,
// and security.istio.io/tlsMode=istio unless the user set it: the VM runs a
// sidecar, so automatic mTLS reaches it with Istio mTLS (a VM without one
// is registered with --labels security.istio.io/tlsMode=disabled).
func (vm *VM) workloadLabels() map[string]string {
	out := map[string]string{"app": vm.Name, meshname.TLSModeLabel: meshname.TLSModeIstio}
	for k, v := range vm.Labels {
		out[k] = v
	}
	return out
}

func sortedPorts(ps []Port) []Port {
	out := append([]Port(nil), ps...)
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}
