package register

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeWriter creates, updates and deletes a VM's objects in Kubernetes.
type KubeWriter struct {
	kinds []kind
	log   *slog.Logger
}

// NewKubeWriter uses the given clientsets.
func NewKubeWriter(kube kubernetes.Interface, istio istioclient.Interface, log *slog.Logger) *KubeWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KubeWriter{kinds: kinds(kube, istio), log: log}
}

// NewKubeWriterForConfig makes clientsets from a rest config.
func NewKubeWriterForConfig(cfg *rest.Config, log *slog.Logger) (*KubeWriter, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	icfg := rest.CopyConfig(cfg)
	icfg.ContentType, icfg.AcceptContentTypes = "", "" // Istio types have no protobuf encoding
	istio, err := istioclient.NewForConfig(icfg)
	if err != nil {
		return nil, fmt.Errorf("istio client: %w", err)
	}
	return NewKubeWriter(kube, istio, log), nil
}

// NewKubeWriterFromKubeconfig loads a kubeconfig (path empty: the usual
// rules, then in-cluster config).
func NewKubeWriterFromKubeconfig(path, context string, log *slog.Logger) (*KubeWriter, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (use --config-dir for file mode)", err)
	}
	return NewKubeWriterForConfig(cfg, log)
}

// Write creates or updates objs and deletes the VM's other objects that
// register made earlier (e.g. after --as changed).
func (w *KubeWriter) Write(ctx context.Context, namespace, name string, objs []Object) ([]Change, error) {
	if err := checkForKube(objs); err != nil {
		return nil, err
	}
	var changes []Change
	want := map[string]bool{}
	for _, o := range objs {
		k := o.GetObjectKind().GroupVersionKind().Kind
		want[k] = true
		c, err := w.kind(k).apply(ctx, o)
		if err != nil {
			return changes, err
		}
		w.log.Info("register", "object", k+" "+namespace+"/"+name, "action", c.Action)
		changes = append(changes, c)
	}
	for _, k := range w.kinds {
		if want[k.name] {
			continue
		}
		c, err := k.remove(ctx, namespace, name)
		if err != nil {
			return changes, err
		}
		if c.Action == Deleted {
			changes = append(changes, c)
		}
	}
	return changes, nil
}

// checkForKube refuses what the API server would refuse half way through.
func checkForKube(objs []Object) error {
	for _, o := range objs {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		for _, ep := range es.Endpoints {
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil && (ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast()) {
					return fmt.Errorf("Kubernetes refuses EndpointSlice address %s (loopback, link-local or unspecified): use the VM's routable IP, or --as serviceentry", a)
				}
			}
		}
	}
	return nil
}

// Remove deletes every object register made for the VM.
func (w *KubeWriter) Remove(ctx context.Context, namespace, name string) ([]Change, error) {
	var changes []Change
	for _, k := range w.kinds {
		c, err := k.remove(ctx, namespace, name)
		if err != nil {
			return changes, err
		}
		if c.Action != "" {
			changes = append(changes, c)
		}
	}
	return changes, nil
}

func (w *KubeWriter) kind(name string) kind {
	for _, k := range w.kinds {
		if k.name == name {
			return k
		}
	}
	panic("register: no client for kind " + name)
}

// kind is the create/get/update/delete of one object kind, with the
// comparison that decides whether an update is needed.
type kind struct {
	name   string
	get    func(ctx context.Context, ns, name string) (Object, error)
	create func(ctx context.Context, o Object) error
	update func(ctx context.Context, o Object) error
	delete func(ctx context.Context, ns, name string) error
	// merge returns existing changed to hold desired, or nil when it already does.
	merge func(existing, desired Object) Object
}

func (k kind) apply(ctx context.Context, desired Object) (Change, error) {
	c := Change{Kind: k.name, Namespace: desired.GetNamespace(), Name: desired.GetName()}
	existing, err := k.get(ctx, c.Namespace, c.Name)
	if apierrors.IsNotFound(err) {
		if err := k.create(ctx, desired); err != nil {
			return c, fmt.Errorf("create %s %s/%s: %w", k.name, c.Namespace, c.Name, err)
		}
		c.Action = Created
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("get %s %s/%s: %w", k.name, c.Namespace, c.Name, err)
	}
	if existing.GetLabels()[ManagedByLabel] != ManagedByValue {
		return c, fmt.Errorf("%s %s/%s exists and was not made by register (no %s=%s label): delete it or pick another name",
			k.name, c.Namespace, c.Name, ManagedByLabel, ManagedByValue)
	}
	merged := k.merge(existing, desired)
	if merged == nil {
		c.Action = Unchanged
		return c, nil
	}
	if err := k.update(ctx, merged); err != nil {
		return c, fmt.Errorf("update %s %s/%s: %w", k.name, c.Namespace, c.Name, err)
	}
	c.Action = Updated
	return c, nil
}

func (k kind) remove(ctx context.Context, ns, name string) (Change, error) {
	c := Change{Kind: k.name, Namespace: ns, Name: name}
	existing, err := k.get(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("get %s %s/%s: %w", k.name, ns, name, err)
	}
	if existing.GetLabels()[ManagedByLabel] != ManagedByValue {
		c.Action = Skipped
		return c, nil
	}
	err = k.delete(ctx, ns, name)
	if err != nil && !apierrors.IsNotFound(err) {
		return c, fmt.Errorf("delete %s %s/%s: %w", k.name, ns, name, err)
	}
	c.Action = Deleted
	return c, nil
}

// mergeLabels sets desired's labels on a copy of existing's; ok is false when
// they are all there already.
func mergeLabels(existing, desired map[string]string) (map[string]string, bool) {
	out := make(map[string]string, len(existing)+len(desired))
	for k, v := range existing {
		out[k] = v
	}
	changed := false
	for k, v := range desired {
		if out[k] != v {
			out[k], changed = v, true
		}
	}
	return out, changed
}
