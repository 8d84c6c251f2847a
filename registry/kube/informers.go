package kube

import (
	"fmt"

	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/librarymesh/controlplane/registry"
)

// KindNamespace is watched but not (yet) written to the store, which has no
// Namespace kind.
const KindNamespace = "Namespace"

// kind is one watched resource: an informer per watched namespace ("" for
// all namespaces, or for the cluster-scoped Namespace informer).
type kind struct {
	name      string
	toStore   bool
	informers map[string]cache.SharedIndexInformer
}

// informerFor returns the informer holding objects of namespace ns.
func (k *kind) informerFor(ns string) cache.SharedIndexInformer {
	if inf, ok := k.informers[ns]; ok {
		return inf
	}
	return k.informers[""]
}

// scope is the informers of one factory pair (one namespace, or all).
type scope struct {
	ns    string
	kube  informers.SharedInformerFactory
	istio istioinformers.SharedInformerFactory
}

func (s *Source) newInformers() error {
	namespaces := s.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		sc := scope{
			ns:    ns,
			kube:  informers.NewSharedInformerFactoryWithOptions(s.kube, s.cfg.Resync, informers.WithNamespace(ns)),
			istio: istioinformers.NewSharedInformerFactoryWithOptions(s.istio, s.cfg.Resync, istioinformers.WithNamespace(ns)),
		}
		if err := s.addKubeInformers(sc); err != nil {
			return err
		}
		s.scopes = append(s.scopes, sc)
		if err := s.addNamespaceInformer(ns); err != nil {
			return err
		}
	}
	return nil
}

type namedInformer struct {
	name string
	inf  cache.SharedIndexInformer
}

func (s *Source) addKubeInformers(sc scope) error {
	kv1 := sc.kube.Core().V1()
	for _, w := range []namedInformer{
		{registry.KindService, kv1.Services().Informer()},
		{registry.KindPod, kv1.Pods().Informer()},
		{registry.KindEndpointSlice, sc.kube.Discovery().V1().EndpointSlices().Informer()},
	} {
		if err := s.addInformer(w.name, true, sc.ns, w.inf); err != nil {
			return err
		}
	}
	s.starts = append(s.starts, sc.kube.Start)
	return nil
}

// addIstioInformers adds informers for the Istio kinds the API server
// serves (see servedIstioKinds).
func (s *Source) addIstioInformers(served map[string]bool) error {
	for _, sc := range s.scopes {
		iv1 := sc.istio.Networking().V1()
		all := []struct {
			name string
			inf  func() cache.SharedIndexInformer
		}{
			{registry.KindServiceEntry, iv1.ServiceEntries().Informer},
			{registry.KindWorkloadEntry, iv1.WorkloadEntries().Informer},
			{registry.KindDestinationRule, iv1.DestinationRules().Informer},
			{registry.KindSidecar, iv1.Sidecars().Informer},
			{registry.KindVirtualService, iv1.VirtualServices().Informer},
			{registry.KindGateway, iv1.Gateways().Informer},
			{registry.KindWorkloadGroup, iv1.WorkloadGroups().Informer},
			{registry.KindPeerAuthentication, sc.istio.Security().V1().PeerAuthentications().Informer},
			{registry.KindAuthorizationPolicy, sc.istio.Security().V1().AuthorizationPolicies().Informer},
		}
		for _, w := range all {
			if !served[w.name] {
				continue
			}
			if err := s.addInformer(w.name, true, sc.ns, w.inf()); err != nil {
				return err
			}
		}
		s.starts = append(s.starts, sc.istio.Start)
	}
	return nil
}

// addNamespaceInformer watches the Namespace object ns, or every Namespace.
func (s *Source) addNamespaceInformer(ns string) error {
	opts := []informers.SharedInformerOption{}
	if ns != metav1.NamespaceAll {
		sel := fields.OneTermEqualSelector("metadata.name", ns).String()
		opts = append(opts, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = sel }))
	}
	f := informers.NewSharedInformerFactoryWithOptions(s.kube, s.cfg.Resync, opts...)
	if err := s.addInformer(KindNamespace, false, ns, f.Core().V1().Namespaces().Informer()); err != nil {
		return err
	}
	s.starts = append(s.starts, f.Start)
	return nil
}

func (s *Source) addInformer(name string, toStore bool, ns string, inf cache.SharedIndexInformer) error {
	k := s.kinds[name]
	if k == nil {
		k = &kind{name: name, toStore: toStore, informers: map[string]cache.SharedIndexInformer{}}
		s.kinds[name] = k
		s.order = append(s.order, k)
	}
	k.informers[ns] = inf
	if err := inf.SetTransform(stripManagedFields); err != nil {
		return fmt.Errorf("kube source: %s transform: %w", name, err)
	}
	if _, err := inf.AddEventHandler(s.handler(name)); err != nil {
		return fmt.Errorf("kube source: %s handler: %w", name, err)
	}
	return nil
}

// stripManagedFields drops metadata.managedFields, which the source never
// reads, to save memory in the informer caches.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
