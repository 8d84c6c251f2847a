package register

import (
	"context"

	"google.golang.org/protobuf/proto"
	netv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func kinds(kube kubernetes.Interface, istio istioclient.Interface) []kind {
	return []kind{
		typedKind(KindService, func(ns string) typedClient[*corev1.Service] {
			return kube.CoreV1().Services(ns)
		}, mergeService),
		typedKind(KindEndpointSlice, func(ns string) typedClient[*discoveryv1.EndpointSlice] {
			return kube.DiscoveryV1().EndpointSlices(ns)
		}, mergeEndpointSlice),
		typedKind(KindServiceEntry, func(ns string) typedClient[*netv1.ServiceEntry] {
			return istio.NetworkingV1().ServiceEntries(ns)
		}, mergeServiceEntry),
		typedKind(KindWorkloadEntry, func(ns string) typedClient[*netv1.WorkloadEntry] {
			return istio.NetworkingV1().WorkloadEntries(ns)
		}, mergeWorkloadEntry),
	}
}

// typedClient is the part of a client-go or Istio client-go typed client
// (e.g. ServiceInterface) that register uses.
type typedClient[T Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// typedKind makes a kind from the typed client for one namespace and the
// kind's merge, which returns nil when existing already holds desired.
func typedKind[T Object](name string, client func(ns string) typedClient[T], merge func(existing, desired T) Object) kind {
	return kind{
		name: name,
		get: func(ctx context.Context, ns, name string) (Object, error) {
			o, err := client(ns).Get(ctx, name, metav1.GetOptions{})
			return o, err
		},
		create: func(ctx context.Context, o Object) error {
			_, err := client(o.GetNamespace()).Create(ctx, o.(T), metav1.CreateOptions{})
			return err
		},
		update: func(ctx context.Context, o Object) error {
			_, err := client(o.GetNamespace()).Update(ctx, o.(T), metav1.UpdateOptions{})
			return err
		},
		delete: func(ctx context.Context, ns, name string) error {
			return client(ns).Delete(ctx, name, metav1.DeleteOptions{})
		},
		merge: func(existing, desired Object) Object {
			return merge(existing.(T), desired.(T))
		},
	}
}

func mergeService(e, d *corev1.Service) Object {
	labels, changed := mergeLabels(e.Labels, d.Labels)
	if !changed && len(e.Spec.Selector) == 0 && equality.Semantic.DeepEqual(e.Spec.Ports, d.Spec.Ports) {
		return nil
	}
	out := e.DeepCopy()
	out.Labels, out.Spec.Selector, out.Spec.Ports = labels, nil, d.Spec.Ports
	return out
}

func mergeEndpointSlice(e, d *discoveryv1.EndpointSlice) Object {
	labels, changed := mergeLabels(e.Labels, d.Labels)
	if !changed && e.AddressType == d.AddressType && equality.Semantic.DeepEqual(e.Endpoints, d.Endpoints) &&
		equality.Semantic.DeepEqual(e.Ports, d.Ports) {
		return nil
	}
	if e.AddressType != d.AddressType {
		// The address type is immutable: the caller's update fails
		// and tells the user to deregister first.
		return d
	}
	out := e.DeepCopy()
	out.Labels, out.Endpoints, out.Ports = labels, d.Endpoints, d.Ports
	return out
}

func mergeServiceEntry(e, d *netv1.ServiceEntry) Object {
	labels, changed := mergeLabels(e.Labels, d.Labels)
	if !changed && proto.Equal(&e.Spec, &d.Spec) {
		return nil
	}
	out := e.DeepCopy()
	out.Labels = labels
	d.Spec.DeepCopyInto(&out.Spec)
	return out
}

func mergeWorkloadEntry(e, d *netv1.WorkloadEntry) Object {
	labels, changed := mergeLabels(e.Labels, d.Labels)
	if !changed && proto.Equal(&e.Spec, &d.Spec) {
		return nil
	}
	out := e.DeepCopy()
	out.Labels = labels
	d.Spec.DeepCopyInto(&out.Spec)
	return out
}
