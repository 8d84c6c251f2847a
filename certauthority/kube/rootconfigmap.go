package kube

import (
	"context"
	"fmt"

	"github.com/librarymesh/controlplane/certauthority"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PublishRoot creates or updates ConfigMap istio-ca-root-cert (key root-cert.pem) in
// namespace. The server calls it for each watched namespace (and again if the ConfigMap
// is changed or deleted). It does nothing when the ConfigMap is already current.
func PublishRoot(ctx context.Context, client kubernetes.Interface, namespace string, rootPEM []byte) error {
	for range maxAttempts {
		retry, err := publishRootOnce(ctx, client, namespace, string(rootPEM))
		if !retry {
			return err
		}
	}
	return fmt.Errorf("publish root in %s: too many conflicting writers", namespace)
}

func publishRootOnce(ctx context.Context, client kubernetes.Interface, ns, root string) (retry bool, err error) {
	cms := client.CoreV1().ConfigMaps(ns)
	name := certauthority.RootConfigMapName
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"istio.io/config": "true"}},
			Data:       map[string]string{certauthority.RootCertFile: root},
		}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		return apierrors.IsAlreadyExists(err), wrapErr(err, "create configmap", ns, name)
	}
	if err != nil {
		return false, wrapErr(err, "get configmap", ns, name)
	}
	if cm.Data[certauthority.RootCertFile] == root {
		return false, nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[certauthority.RootCertFile] = root
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return apierrors.IsConflict(err), wrapErr(err, "update configmap", ns, name)
}
