package kube

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RootPublisher keeps ConfigMap istio-ca-root-cert current in the given
// namespaces (every namespace when none are named), checking once a minute.
type RootPublisher struct {
	Client     kubernetes.Interface
	Namespaces []string
	Root       func() []byte // the PEM root to publish
	// Changed, when set, is signalled when Root changed: it is published
	// at once instead of at the next minute.
	Changed <-chan struct{}
	Logger  *slog.Logger
}

// Start publishes now, then every minute and when Changed is signalled,
// until ctx ends.
func (p RootPublisher) Start(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		p.publish(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.Changed:
		}
	}
}

func (p RootPublisher) publish(ctx context.Context) {
	nss := p.Namespaces
	if len(nss) == 0 {
		list, err := p.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			p.Logger.Warn("list namespaces to publish the root", "err", err)
			return
		}
		for _, ns := range list.Items {
			nss = append(nss, ns.Name)
		}
	}
	for _, ns := range nss {
		if err := PublishRoot(ctx, p.Client, ns, p.Root()); err != nil {
			p.Logger.Warn("publish root", "namespace", ns, "err", err)
		}
	}
}
