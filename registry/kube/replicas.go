package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/librarymesh/controlplane/registry/autoregister"
)

// ReplicaLeasePrefix starts the name of each replica's heartbeat Lease.
const ReplicaLeasePrefix = "controlplane-replica-"

// ReplicaLeases records each replica's heartbeat in a coordination.k8s.io
// Lease of its own (ReplicaLeasePrefix + instance) in the server's
// namespace, for the auto-registration sweep to tell a dead replica's
// entries.
type ReplicaLeases struct {
	Client    kubernetes.Interface
	Namespace string
	// Duration is written as the Lease's leaseDurationSeconds (informative:
	// the sweep uses its own ReplicaTimeout).
	Duration time.Duration
	Now      func() time.Time // default time.Now
}

var _ autoregister.Replicas = ReplicaLeases{}

// Heartbeat creates or renews instance's Lease.
func (r ReplicaLeases) Heartbeat(ctx context.Context, instance string) error {
	now := metav1.NewMicroTime(r.now())
	leases := r.Client.CoordinationV1().Leases(r.Namespace)
	name := ReplicaLeaseName(instance)
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		secs := int32(r.Duration.Seconds())
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "controlplane", "app.kubernetes.io/component": "replica-heartbeat"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &instance, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create Lease %s/%s: %w", r.Namespace, name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Lease %s/%s: %w", r.Namespace, name, err)
	}
	l.Spec.HolderIdentity, l.Spec.RenewTime = &instance, &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew Lease %s/%s: %w", r.Namespace, name, err)
	}
	return nil
}

// LastSeen is the renew time of instance's Lease; zero when it has none.
func (r ReplicaLeases) LastSeen(ctx context.Context, instance string) (time.Time, error) {
	name := ReplicaLeaseName(instance)
	l, err := r.Client.CoordinationV1().Leases(r.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read Lease %s/%s: %w", r.Namespace, name, err)
	}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != instance || l.Spec.RenewTime == nil {
		return time.Time{}, nil
	}
	return l.Spec.RenewTime.Time, nil
}

func (r ReplicaLeases) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// ReplicaLeaseName is the Lease of replica instance: the prefix and the
// instance in lower case with characters a name cannot hold replaced, plus
// a hash of the instance when that changed it (so two instances never
// share a Lease).
func ReplicaLeaseName(instance string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(instance) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" || s != instance || len(s) > 200 {
		sum := sha256.Sum256([]byte(instance))
		s = strings.TrimRight(s[:min(len(s), 200)], "-")
		if s != "" {
			s += "-"
		}
		s += hex.EncodeToString(sum[:4])
	}
	return ReplicaLeasePrefix + s
}
