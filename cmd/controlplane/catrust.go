package main

import (
	"encoding/json"
	"net/http"

	"github.com/librarymesh/controlplane/certauthority"
	"github.com/librarymesh/controlplane/server"
)

// wireTrust makes the generated xDS name the CA's trust bundle (so the
// server knows from ACKs which proxies took a new one), lets the CA's
// rotation wait on those ACKs, and serves the CA's state at /debug/ca.
// notify is signalled (without blocking) on every trust change.
func wireTrust(srv *server.Server, ca *certauthority.CA, notify chan<- struct{}) {
	srv.SetTrustBundle(ca.BundleID())
	ca.SetProxyAcks(func(id string) (int, int) {
		acked, total, _ := srv.TrustBundleAcks(id)
		return acked, total
	})
	ca.OnTrustChange(func() {
		srv.SetTrustBundle(ca.BundleID())
		select {
		case notify <- struct{}{}:
		default:
		}
	})
	srv.HandleDebug("GET /debug/ca", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ca.Status()) // a failed write is the client's
	}))
}
