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
	return []kind{serviceKind(kube), endpointSliceKind(kube), serviceEntryKind(istio), workloadEntryKind(istio)}
}

func serviceKind(kube kubernetes.Interface) kind {
	return kind{
		name: KindService,
		get: func(ctx context.Context, ns, name string) (Object, error) {
			return kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, o Object) error {
			_, err := kube.CoreV1().Services(o.GetNamespace()).Create(ctx, o.(*corev1.Service), metav1.CreateOptions{})
			return err
		},
		update: func(ctx context.Context, o Object) error {
			_, err := kube.CoreV1().Services(o.GetNamespace()).Update(ctx, o.(*corev1.Service), metav1.UpdateOptions{})
			return err
		},
		delete: func(ctx context.Context, ns, name string) error {
			return kube.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
		},
		merge: func(existing, desired Object) Object {
			e, d := existing.(*corev1.Service), desired.(*corev1.Service)
			labels, changed := mergeLabels(e.Labels, d.Labels)
			if !changed && len(e.Spec.Selector) == 0 && equality.Semantic.DeepEqual(e.Spec.Ports, d.Spec.Ports) {
				return nil
			}
			out := e.DeepCopy()
			out.Labels, out.Spec.Selector, out.Spec.Ports = labels, nil, d.Spec.Ports
			return out
		},
	}
}

func endpointSliceKind(kube kubernetes.Interface) kind {
	return kind{
		name: KindEndpointSlice,
		get: func(ctx context.Context, ns, name string) (Object, error) {
			return kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, o Object) error {
			_, err := kube.DiscoveryV1().EndpointSlices(o.GetNamespace()).Create(ctx, o.(*discoveryv1.EndpointSlice), metav1.CreateOptions{})
			return err
		},
		update: func(ctx context.Context, o Object) error {
			_, err := kube.DiscoveryV1().EndpointSlices(o.GetNamespace()).Update(ctx, o.(*discoveryv1.EndpointSlice), metav1.UpdateOptions{})
			return err
		},
		delete: func(ctx context.Context, ns, name string) error {
			return kube.DiscoveryV1().EndpointSlices(ns).Delete(ctx, name, metav1.DeleteOptions{})
		},
		merge: func(existing, desired Object) Object {
			e, d := existing.(*discoveryv1.EndpointSlice), desired.(*discoveryv1.EndpointSlice)
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
		},
	}
}

func serviceEntryKind(istio istioclient.Interface) kind {
	return kind{
		name: KindServiceEntry,
		get: func(ctx context.Context, ns, name string) (Object, error) {
			return istio.NetworkingV1().ServiceEntries(ns).Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, o Object) error {
			_, err := istio.NetworkingV1().ServiceEntries(o.GetNamespace()).Create(ctx, o.(*netv1.ServiceEntry), metav1.CreateOptions{})
			return err
		},
		update: func(ctx context.Context, o Object) error {
			_, err := istio.NetworkingV1().ServiceEntries(o.GetNamespace()).Update(ctx, o.(*netv1.ServiceEntry), metav1.UpdateOptions{})
			return err
		},
		delete: func(ctx context.Context, ns, name string) error {
			return istio.NetworkingV1().ServiceEntries(ns).Delete(ctx, name, metav1.DeleteOptions{})
		},
		merge: func(existing, desired Object) Object {
			e, d := existing.(*netv1.ServiceEntry), desired.(*netv1.ServiceEntry)
			labels, changed := mergeLabels(e.Labels, d.Labels)
			if !changed && proto.Equal(&e.Spec, &d.Spec) {
				return nil
			}
			out := e.DeepCopy()
			out.Labels = labels
			d.Spec.DeepCopyInto(&out.Spec)
			return out
		},
	}
}

func workloadEntryKind(istio istioclient.Interface) kind {
	return kind{
		name: KindWorkloadEntry,
		get: func(ctx context.Context, ns, name string) (Object, error) {
			return istio.NetworkingV1().WorkloadEntries(ns).Get(ctx, name, metav1.GetOptions{})
		},
		create: func(ctx context.Context, o Object) error {
			_, err := istio.NetworkingV1().WorkloadEntries(o.GetNamespace()).Create(ctx, o.(*netv1.WorkloadEntry), metav1.CreateOptions{})
			return err
		},
		update: func(ctx context.Context, o Object) error {
			_, err := istio.NetworkingV1().WorkloadEntries(o.GetNamespace()).Update(ctx, o.(*netv1.WorkloadEntry), metav1.UpdateOptions{})
			return err
		},
		delete: func(ctx context.Context, ns, name string) error {
			return istio.NetworkingV1().WorkloadEntries(ns).Delete(ctx, name, metav1.DeleteOptions{})
		},
		merge: func(existing, desired Object) Object {
			e, d := existing.(*netv1.WorkloadEntry), desired.(*netv1.WorkloadEntry)
			labels, changed := mergeLabels(e.Labels, d.Labels)
			if !changed && proto.Equal(&e.Spec, &d.Spec) {
				return nil
			}
			out := e.DeepCopy()
			out.Labels = labels
			d.Spec.DeepCopyInto(&out.Spec)
			return out
		},
	}
}
