// Package meshname makes and parses every name the mesh shares between its
// parts and with Envoy, grpc-go and Istio tooling: SPIFFE IDs, cluster,
// listener, route and virtual host names, mTLS SNI, SDS secret and cluster
// names, and Istio node IDs. Each format has one function that makes it and,
// where anyone reads it back, one that parses it.
//
// The package is a leaf: it imports only the standard library, so the
// registry, snapshot, the CA, the node agent and the server can all use it.
package meshname
