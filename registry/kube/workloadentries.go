package kube

import (
	"context"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/librarymesh/controlplane/registry/autoregister"
)

// WorkloadEntries is the auto-registration backend of Kubernetes mode: real
// WorkloadEntry objects, read and written through the API server (never a
// cache, so replicas see each other's writes at once; an update of a stale
// version fails instead of overwriting).
type WorkloadEntries struct {
	client istioclient.Interface
}

var _ autoregister.Backend = (*WorkloadEntries)(nil)

// NewWorkloadEntries makes the backend for the cluster of cfg.
func NewWorkloadEntries(cfg *rest.Config) (*WorkloadEntries, error) {
	icfg := rest.CopyConfig(cfg)
	icfg.ContentType, icfg.AcceptContentTypes = "", "" // the Istio types have no protobuf encoding
	c, err := istioclient.NewForConfig(icfg)
	if err != nil {
		return nil, fmt.Errorf("auto-registration: istio client: %w", err)
	}
	return &WorkloadEntries{client: c}, nil
}

// Get returns the entry, or nil when there is none.
func (w *WorkloadEntries) Get(ctx context.Context, ns, name string) (*networkingv1.WorkloadEntry, error) {
	we, err := w.client.NetworkingV1().WorkloadEntries(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return we, err
}

// Create creates the entry.
func (w *WorkloadEntries) Create(ctx context.Context, we *networkingv1.WorkloadEntry) error {
	_, err := w.client.NetworkingV1().WorkloadEntries(we.Namespace).Create(ctx, we, metav1.CreateOptions{})
	return err
}

// Update writes metadata and spec of the version read.
func (w *WorkloadEntries) Update(ctx context.Context, we *networkingv1.WorkloadEntry) error {
	_, err := w.client.NetworkingV1().WorkloadEntries(we.Namespace).Update(ctx, we, metav1.UpdateOptions{})
	return err
}

// UpdateStatus writes the status subresource of the version read.
func (w *WorkloadEntries) UpdateStatus(ctx context.Context, we *networkingv1.WorkloadEntry) error {
	_, err := w.client.NetworkingV1().WorkloadEntries(we.Namespace).UpdateStatus(ctx, we, metav1.UpdateOptions{})
	return err
}

// Delete deletes the entry if it is still the version read.
func (w *WorkloadEntries) Delete(ctx context.Context, we *networkingv1.WorkloadEntry) error {
	rv := we.ResourceVersion
	err := w.client.NetworkingV1().WorkloadEntries(we.Namespace).Delete(ctx, we.Name,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// List returns the auto-registered entries of every namespace.
func (w *WorkloadEntries) List(ctx context.Context) ([]*networkingv1.WorkloadEntry, error) {
	list, err := w.client.NetworkingV1().WorkloadEntries(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []*networkingv1.WorkloadEntry
	for _, we := range list.Items {
		if we.Annotations[autoregister.AnnotationGroup] != "" {
			out = append(out, we)
		}
	}
	return out, nil
}
