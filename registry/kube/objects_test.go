package kube_test

import (
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Addresses below are example data: nothing dials them.

func makeService(ns, name string, port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(port),
				Protocol: corev1.ProtocolTCP}},
		},
	}
}

func makeEndpointSlice(ns, service, name string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	eps := make([]discoveryv1.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discoveryv1.Endpoint{Addresses: []string{a}}
	}
	portName := "http"
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
	}
}

// makeServiceEntrySpec is a STATIC, mesh-internal entry for host with one
// HTTP port and VM endpoints at addrs.
func makeServiceEntrySpec(host string, port uint32, addrs ...string) networkingapi.ServiceEntry {
	eps := make([]*networkingapi.WorkloadEntry, len(addrs))
	for i, a := range addrs {
		eps[i] = &networkingapi.WorkloadEntry{Address: a, ServiceAccount: "vm"}
	}
	return networkingapi.ServiceEntry{
		Hosts:      []string{host},
		Ports:      []*networkingapi.ServicePort{{Number: port, Name: "http", Protocol: "HTTP"}},
		Resolution: networkingapi.ServiceEntry_STATIC,
		Location:   networkingapi.ServiceEntry_MESH_INTERNAL,
		Endpoints:  eps,
	}
}

func makeServiceEntry(ns, name, host string, port uint32, addrs ...string) *networkingv1.ServiceEntry {
	return &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       makeServiceEntrySpec(host, port, addrs...),
	}
}

func makeServiceEntryV1beta1(ns, name, host string, port uint32, addrs ...string) *networkingv1beta1.ServiceEntry {
	return &networkingv1beta1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       makeServiceEntrySpec(host, port, addrs...),
	}
}
