package kube

import (
	"context"
	"fmt"
	"time"

	"github.com/librarymesh/controlplane/certauthority"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// UsedTokensConfigMapName holds the IDs of used single-use bootstrap tokens.
const UsedTokensConfigMapName = "istio-ca-used-bootstrap-tokens"

const maxAttempts = 10

// UsedTokens keeps used single-use bootstrap token IDs in a ConfigMap (id -> expiry,
// RFC 3339). Writes use the resourceVersion, so replicas cannot both win one token.
type UsedTokens struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string           // default UsedTokensConfigMapName
	Now       func() time.Time // default time.Now
}

var _ certauthority.UsedTokenStore = (*UsedTokens)(nil)

// MarkUsed implements certauthority.UsedTokenStore.
func (u *UsedTokens) MarkUsed(ctx context.Context, id string, expiry time.Time) (bool, error) {
	for range maxAttempts {
		first, retry, err := u.markOnce(ctx, id, expiry)
		if !retry {
			return first, err
		}
	}
	return false, fmt.Errorf("record used token in configmap %s/%s: too many conflicting writers", u.Namespace, u.name())
}

func (u *UsedTokens) markOnce(ctx context.Context, id string, expiry time.Time) (first, retry bool, err error) {
	cms := u.Client.CoreV1().ConfigMaps(u.Namespace)
	exp := expiry.UTC().Format(time.RFC3339)
	cm, err := cms.Get(ctx, u.name(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: u.name(), Namespace: u.Namespace},
			Data: map[string]string{id: exp}}
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
		return err == nil, apierrors.IsAlreadyExists(err), wrapErr(err, "create configmap", u.Namespace, u.name())
	}
	if err != nil {
		return false, false, wrapErr(err, "get configmap", u.Namespace, u.name())
	}
	if _, used := cm.Data[id]; used {
		return false, false, nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	u.prune(cm.Data)
	cm.Data[id] = exp
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err == nil, apierrors.IsConflict(err), wrapErr(err, "update configmap", u.Namespace, u.name())
}

// prune drops tokens that expired over an hour ago: they are refused anyway.
func (u *UsedTokens) prune(data map[string]string) {
	now := time.Now
	if u.Now != nil {
		now = u.Now
	}
	for id, exp := range data {
		if t, err := time.Parse(time.RFC3339, exp); err == nil && t.Add(time.Hour).Before(now()) {
			delete(data, id)
		}
	}
}

func (u *UsedTokens) name() string {
	if u.Name == "" {
		return UsedTokensConfigMapName
	}
	return u.Name
}

func wrapErr(err error, what, ns, name string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s/%s: %w", what, ns, name, err)
}
