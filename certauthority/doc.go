// Package certauthority is the control plane's SPIFFE certificate authority.
//
// It keeps a root (self-signed and persisted through a KeyStore, or plugged in from
// Istio's cacerts layout), signs workload certificates for proven identities only, and
// serves Istio's certificate API (istio.v1.auth.IstioCertificateService). Callers prove
// who they are with a client certificate from this CA, a Kubernetes service account
// token (TokenReview, audience istio-ca) or a bootstrap token this CA issued (single-use
// unless issued reusable). Bearer tokens are accepted only over TLS (Config.PlaintextTokens
// allows them in clear for tests), and CreateCertificate is rate limited per identity and
// in all (Limits; ResourceExhausted past a limit).
//
// The package knows nothing of xDS; the server wires it:
//
//	cfg := certauthority.FileModeConfig(dataDir, cacertsDir) // or kube.ModeConfig(client, ns)
//	cfg.Logger, cfg.Registerer, cfg.ExtraServingSANs = log, reg, extraSANs
//	ca, err := certauthority.New(ctx, cfg)
//	ca.Register(plaintextServer)                                  // 15010: client certificates only
//	tlsServer := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServingTLSConfig())))
//	ca.Register(tlsServer)                                        // 15012
//	id, how, err := ca.Authenticate(streamCtx)                    // e.g. xDS on 15012
//	kube.PublishRoot(ctx, client, namespace, ca.RootPEM())        // each watched namespace
package certauthority
