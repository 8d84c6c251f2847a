// Package kube keeps the caBundle of the sidecar injector's
// MutatingWebhookConfiguration equal to our CA's root, as istiod does for
// its own, so the API server trusts the webhook's serving certificate.
package kube

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// DefaultWebhookConfig is the name deploy/ gives the configuration.
const DefaultWebhookConfig = "controlplane-sidecar-injector"

// CABundlePatcher sets every webhook's clientConfig.caBundle of the
// MutatingWebhookConfiguration Name to Root(), at start and then every
// Interval (a re-applied manifest clears it; a missing configuration is
// waited for).
type CABundlePatcher struct {
	Client   kubernetes.Interface
	Name     string
	Root     func() []byte
	Interval time.Duration // default 30 s
	Logger   *slog.Logger
}

// Start patches until ctx ends.
func (p CABundlePatcher) Start(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		changed, err := p.Patch(ctx)
		switch {
		case err != nil && err.Error() != lastErr:
			p.Logger.Warn("sidecar injector caBundle", "err", err)
		case changed > 0:
			p.Logger.Info("sidecar injector caBundle set", "object", p.Name, "webhooks", changed)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error() // logged once until it changes
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Patch sets the caBundle where it differs and returns how many webhooks
// changed.
func (p CABundlePatcher) Patch(ctx context.Context) (int, error) {
	root := p.Root()
	changed := 0
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		api := p.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
		cfg, err := api.Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed = 0
		for i := range cfg.Webhooks {
			if cc := &cfg.Webhooks[i].ClientConfig; !bytes.Equal(cc.CABundle, root) {
				cc.CABundle = root
				changed++
			}
		}
		if changed == 0 {
			return nil
		}
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{FieldManager: "controlplane"})
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return 0, fmt.Errorf("MutatingWebhookConfiguration %s not found: pods are not injected until it exists (kubectl apply -k deploy/, or --inject-webhook-config)", p.Name)
	case apierrors.IsForbidden(err):
		return 0, fmt.Errorf("MutatingWebhookConfiguration %s: %w (the ClusterRole needs get and update on it)", p.Name, err)
	case err != nil:
		return 0, fmt.Errorf("MutatingWebhookConfiguration %s: %w", p.Name, err)
	}
	return changed, nil
}
