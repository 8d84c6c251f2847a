package snapshot

import "github.com/librarymesh/controlplane/registry"

func (v *testView) Sidecars() []*registry.Sidecar { return nil }
