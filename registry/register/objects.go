package register

import (
	"net/netip"
	"strings"

	apinetv1 "istio.io/api/networking/v1"
	netv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Object is a Kubernetes object register writes.
type Object interface {
	runtime.Object
	metav1.Object
}

// Kinds register writes, in the order they are written.
const (
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
	KindServiceEntry  = "ServiceEntry"
	KindWorkloadEntry = "WorkloadEntry"
)

// endpointSliceManagedBy tells the EndpointSlice controller to leave the slice alone.
const endpointSliceManagedBy = "controlplane-register"

// Build returns the objects for the VM's shape, all named after the VM.
func Build(vm *VM) []Object {
	switch vm.As {
	case AsService:
		return []Object{Service(vm), EndpointSlice(vm)}
	case AsWorkloadEntry:
		return []Object{WorkloadEntry(vm)}
	default:
		return []Object{Service(vm), ServiceEntry(vm)}
	}
}

func objectMeta(vm *VM) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      vm.Name,
		Namespace: vm.Namespace,
		Labels:    map[string]string{ManagedByLabel: ManagedByValue},
	}
}

// Service is a Service without a selector, so NAME.NS.svc.cluster.local
// resolves in pods; its endpoints come from elsewhere.
func Service(vm *VM) *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: KindService},
		ObjectMeta: objectMeta(vm),
	}
	for _, p := range sortedPorts(vm.Ports) {
		svc.Spec.Ports = append(svc.Spec.Ports, servicePort(p))
	}
	return svc
}

func servicePort(p Port) corev1.ServicePort {
	return corev1.ServicePort{
		Name:        p.Name,
		Port:        p.Number,
		Protocol:    kubeProtocol(p.Protocol),
		AppProtocol: appProtocol(p.Protocol),
		TargetPort:  intstr.FromInt32(p.Number),
	}
}

func kubeProtocol(istio string) corev1.Protocol {
	if istio == "UDP" {
		return corev1.ProtocolUDP
	}
	return corev1.ProtocolTCP
}

func appProtocol(istio string) *string {
	s := strings.ToLower(istio)
	return &s
}

// EndpointSlice holds the VM IP as the one endpoint of the Service.
func EndpointSlice(vm *VM) *discoveryv1.EndpointSlice {
	meta := objectMeta(vm)
	meta.Labels[discoveryv1.LabelServiceName] = vm.Name
	meta.Labels[discoveryv1.LabelManagedBy] = endpointSliceManagedBy
	family := discoveryv1.AddressTypeIPv4
	if netip.MustParseAddr(vm.IP).Is6() {
		family = discoveryv1.AddressTypeIPv6
	}
	ready := true
	es := &discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: KindEndpointSlice},
		ObjectMeta:  meta,
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{vm.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
	}
	for _, p := range sortedPorts(vm.Ports) {
		name, num, proto := p.Name, p.Number, kubeProtocol(p.Protocol)
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Port: &num, Protocol: &proto, AppProtocol: appProtocol(p.Protocol)})
	}
	return es
}

// ServiceEntry makes the VM the STATIC endpoint of the mesh-internal host
// NAME.NS.svc.cluster.local.
func ServiceEntry(vm *VM) *netv1.ServiceEntry {
	se := &netv1.ServiceEntry{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: KindServiceEntry},
		ObjectMeta: objectMeta(vm),
	}
	se.Spec.Hosts = []string{vm.Hostname()}
	se.Spec.Location = apinetv1.ServiceEntry_MESH_INTERNAL
	se.Spec.Resolution = apinetv1.ServiceEntry_STATIC
	for _, p := range sortedPorts(vm.Ports) {
		se.Spec.Ports = append(se.Spec.Ports, &apinetv1.ServicePort{Number: uint32(p.Number), Protocol: p.Protocol, Name: p.Name})
	}
	se.Spec.Endpoints = []*apinetv1.WorkloadEntry{workloadEntrySpec(vm)}
	return se
}

// WorkloadEntry is the VM as a workload, for an existing ServiceEntry or
// Service to select by its labels.
func WorkloadEntry(vm *VM) *netv1.WorkloadEntry {
	we := &netv1.WorkloadEntry{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.istio.io/v1", Kind: KindWorkloadEntry},
		ObjectMeta: objectMeta(vm),
	}
	spec := workloadEntrySpec(vm)
	we.Spec.Address, we.Spec.Labels, we.Spec.ServiceAccount, we.Spec.Ports = spec.Address, spec.Labels, spec.ServiceAccount, spec.Ports
	we.Spec.Locality = spec.Locality
	return we
}

func workloadEntrySpec(vm *VM) *apinetv1.WorkloadEntry {
	ports := make(map[string]uint32, len(vm.Ports))
	for _, p := range vm.Ports {
		ports[p.Name] = uint32(p.Number)
	}
	return &apinetv1.WorkloadEntry{
		Address:        vm.IP,
		Labels:         vm.workloadLabels(),
		ServiceAccount: vm.ServiceAccount,
		Ports:          ports,
		Locality:       vm.Locality,
	}
}
