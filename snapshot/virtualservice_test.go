package snapshot

import "github.com/librarymesh/controlplane/registry"

// VirtualServices: the unit tests' views have none (the golden case
// virtual-service covers them).
func (v *testView) VirtualServices() []*registry.VirtualService { return nil }
