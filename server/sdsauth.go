package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/librarymesh/controlplane/meshname"
	"github.com/librarymesh/controlplane/snapshot"
)

// secretAuthTimeout bounds one authorization question (a SubjectAccessReview).
const secretAuthTimeout = 5 * time.Second

// authorizeSecrets leaves out of a proxy's parts the gateway credentials
// (`kubernetes://[NS/]NAME`) its identity may not read: the proven one on
// the TLS port, else the node's NAMESPACE and SERVICE_ACCOUNT, as Istio's
// SDS server checks. Each refusal is logged once per connection, naming
// the secret and the reason. Parts without credentials come back as they are.
func (p *pusher) authorizeSecrets(c *conn, shared, own *snapshot.Resources) (*snapshot.Resources, *snapshot.Resources) {
	forgetRefusedNotIn(c, shared, own)
	return p.authorizedPart(c, shared), p.authorizedPart(c, own)
}

// forgetRefusedNotIn drops the refusals of credentials the proxy's config
// no longer names (so it is not rechecked for them).
func forgetRefusedNotIn(c *conn, parts ...*snapshot.Resources) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.refusedSecrets {
		named := slices.ContainsFunc(parts, func(r *snapshot.Resources) bool {
			return r != nil && slices.ContainsFunc(r.Secrets, func(s types.Resource) bool { return s.(*tlsv3.Secret).GetName() == name })
		})
		if !named {
			delete(c.refusedSecrets, name)
		}
	}
}

func (p *pusher) authorizedPart(c *conn, r *snapshot.Resources) *snapshot.Resources {
	if r == nil || len(r.Secrets) == 0 {
		return r
	}
	keep := make([]types.Resource, 0, len(r.Secrets))
	for _, res := range r.Secrets {
		name := res.(*tlsv3.Secret).GetName()
		ns, _, _, ok := meshname.ParseCredentialSecret(name, c.proxy.Namespace)
		if !ok {
			keep = append(keep, res)
			continue
		}
		if err := p.maySend(c, ns); err != nil {
			p.refused(c, name, err)
			continue
		}
		p.allowed(c, name)
		keep = append(keep, res)
	}
	if len(keep) == len(r.Secrets) {
		return r
	}
	out := *r
	out.Secrets = keep
	return &out
}

// maySend asks the SecretAuthorizer whether the connection's identity may
// read Secrets of namespace ns.
func (p *pusher) maySend(c *conn, ns string) error {
	if p.secrets == nil {
		return errors.New("the server serves no gateway credentials (no SecretAuthorizer configured)")
	}
	id := Identity{Namespace: c.proxy.Namespace, ServiceAccount: c.proxy.Metadata.ServiceAccount}
	if c.caller != nil {
		id = *c.caller
	}
	if id.ServiceAccount == "" {
		return errors.New("the proxy names no service account (node metadata SERVICE_ACCOUNT)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), secretAuthTimeout)
	defer cancel()
	if err := p.secrets.MayReadSecrets(ctx, id.Namespace, id.ServiceAccount, ns); err != nil {
		return fmt.Errorf("service account %s/%s: %w", id.Namespace, id.ServiceAccount, err)
	}
	return nil
}

// recheckRefused rebuilds, every interval until ctx ends, the connections
// that were refused a credential: the answer may have changed (access
// granted or revoked is seen within the interval plus the authorizer's
// cache time). Other connections are left alone.
func (p *pusher) recheckRefused(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		for _, c := range p.connections() {
			c.mu.Lock()
			refused := len(c.refusedSecrets) > 0 && !c.closed
			c.mu.Unlock()
			if refused {
				p.buildLocked(c, time.Now())
			}
		}
		p.mu.Unlock()
	}
}

// allowed forgets an earlier refusal of secret, so that a later one is
// logged again.
func (p *pusher) allowed(c *conn, secret string) {
	c.mu.Lock()
	delete(c.refusedSecrets, secret)
	c.mu.Unlock()
}

// refused logs a refused secret once per connection and reason.
func (p *pusher) refused(c *conn, secret string, err error) {
	c.mu.Lock()
	if c.refusedSecrets == nil {
		c.refusedSecrets = map[string]string{}
	}
	repeated := c.refusedSecrets[secret] == err.Error()
	c.refusedSecrets[secret] = err.Error()
	c.mu.Unlock()
	if !repeated {
		p.log.Warn("gateway credential refused: the proxy may not read the Secret", "conn", c.id, "secret", secret, "error", err)
	}
}
