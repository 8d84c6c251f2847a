package autoregister

import (
	"context"
	"fmt"
	"sync"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/librarymesh/controlplane/registry"
)

// StoreOrigin is the origin auto-registered entries have in the store in
// file mode.
const StoreOrigin = "autoregister"

// StoreBackend keeps entries in the registry's store (file mode): they are
// in the model (and /debug/registryz) under the origin StoreOrigin, and
// gone when the server restarts (its VMs register again as they reconnect).
type StoreBackend struct {
	store *registry.Store

	mu      sync.Mutex
	entries map[string]*networkingv1.WorkloadEntry // by namespace/name
}

// NewStoreBackend writes entries to store.
func NewStoreBackend(store *registry.Store) *StoreBackend {
	return &StoreBackend{store: store, entries: map[string]*networkingv1.WorkloadEntry{}}
}

var _ Backend = (*StoreBackend)(nil)

// Get returns a copy of the entry, or nil.
func (b *StoreBackend) Get(_ context.Context, ns, name string) (*networkingv1.WorkloadEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if we := b.entries[ns+"/"+name]; we != nil {
		return we.DeepCopy(), nil
	}
	return nil, nil
}

// Create adds the entry.
func (b *StoreBackend) Create(_ context.Context, we *networkingv1.WorkloadEntry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.entries[we.Namespace+"/"+we.Name] != nil {
		return fmt.Errorf("%s already exists", describe(we.Namespace, we.Name))
	}
	return b.putLocked(we)
}

// Update replaces the entry.
func (b *StoreBackend) Update(_ context.Context, we *networkingv1.WorkloadEntry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.putLocked(we)
}

// UpdateStatus replaces the entry (the store has no status of its own).
func (b *StoreBackend) UpdateStatus(ctx context.Context, we *networkingv1.WorkloadEntry) error {
	return b.Update(ctx, we)
}

func (b *StoreBackend) putLocked(we *networkingv1.WorkloadEntry) error {
	we = we.DeepCopy()
	if ps := b.store.Upsert(StoreOrigin, we); len(ps) > 0 {
		return fmt.Errorf("%s refused: %v", describe(we.Namespace, we.Name), ps[0])
	}
	b.entries[we.Namespace+"/"+we.Name] = we
	return nil
}

// Delete removes the entry.
func (b *StoreBackend) Delete(_ context.Context, we *networkingv1.WorkloadEntry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, we.Namespace+"/"+we.Name)
	b.store.Delete(StoreOrigin, registry.KindWorkloadEntry, we.Namespace, we.Name)
	return nil
}

// List returns copies of every entry.
func (b *StoreBackend) List(context.Context) ([]*networkingv1.WorkloadEntry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*networkingv1.WorkloadEntry, 0, len(b.entries))
	for _, we := range b.entries {
		out = append(out, we.DeepCopy())
	}
	return out, nil
}
