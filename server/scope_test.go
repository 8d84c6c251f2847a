package server

import "github.com/librarymesh/controlplane/registry"

func (v *fakeView) Sidecars() []*registry.Sidecar { return nil }
