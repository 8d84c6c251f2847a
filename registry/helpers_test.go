package registry_test

import (
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func meta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "default"} }

// makeService is a Service with a cluster IP and ports given as name:number pairs.
func makeService(name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: meta(name), Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func svcPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}
}

func makeSlice(name, service string, port int32, addrs ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{ObjectMeta: meta(name), AddressType: discoveryv1.AddressTypeIPv4}
	es.Labels = map[string]string{discoveryv1.LabelServiceName: service}
	pname := "http"
	es.Ports = []discoveryv1.EndpointPort{{Name: &pname, Port: &port}}
	for _, a := range addrs {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return es
}

func makePod(name, ip, sa string, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: meta(name)}
	p.Labels = labels
	p.Spec.ServiceAccountName = sa
	p.Status.PodIP = ip
	p.Status.Phase = corev1.PodRunning
	return p
}

// makeEntry is a STATIC MESH_INTERNAL ServiceEntry for host with one tcp port and endpoints.
func makeEntry(name, host string, addrs ...string) *networkingv1.ServiceEntry {
	se := &networkingv1.ServiceEntry{ObjectMeta: meta(name)}
	se.Spec.Hosts = []string{host}
	se.Spec.Location = networkingapi.ServiceEntry_MESH_INTERNAL
	se.Spec.Resolution = networkingapi.ServiceEntry_STATIC
	se.Spec.Ports = []*networkingapi.ServicePort{{Number: 5432, Name: "tcp", Protocol: "TCP"}}
	for _, a := range addrs {
		se.Spec.Endpoints = append(se.Spec.Endpoints, &networkingapi.WorkloadEntry{Address: a, ServiceAccount: "postgres"})
	}
	return se
}

func makeWorkloadEntry(name, addr string, labels map[string]string) *networkingv1.WorkloadEntry {
	we := &networkingv1.WorkloadEntry{ObjectMeta: meta(name)}
	we.Spec.Address = addr
	we.Spec.Labels = labels
	we.Spec.ServiceAccount = "vm"
	return we
}
