// Package sdsconfig builds the one SDS config source Envoy is given, for
// the xDS snapshot's TLS contexts and the VM bootstrap's xDS cluster alike.
// It is a package of its own so that the bootstrap (and the node agent and
// VM bundle that use it) need not import the snapshot builder.
package sdsconfig

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/librarymesh/controlplane/meshname"
)

// ConfigSource fetches secrets from the node agent's local SDS server
// through cluster meshname.SDSCluster (a Unix socket the bootstrap defines),
// in the form Istio's sidecars use. It is the only SDS config source: the
// xDS snapshot and the VM bootstrap (snapshot/bootstrap) both build theirs
// with SecretConfig.
//
// The control plane serves no secrets over ADS (Resources.Secrets stays
// empty), so the source is never `ads: {}`: an ADS-served secret would need
// the control plane to hold every workload's private key. The agent's
// server (go-control-plane) keeps the node of a stream's first request, so
// set_node_on_first_message_only holds; initial_fetch_timeout 0 makes Envoy
// wait for the local agent's certificate instead of starting a TLS cluster or
// listener without one after the default 15 s.
func ConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:  corev3.ApiVersion_V3,
		InitialFetchTimeout: durationpb.New(0),
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:                   corev3.ApiConfigSource_GRPC,
			TransportApiVersion:       corev3.ApiVersion_V3,
			SetNodeOnFirstMessageOnly: true,
			GrpcServices: []*corev3.GrpcService{{
				TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: meshname.SDSCluster}},
			}},
		}},
	}
}

// SecretConfig names a secret the local agent serves (see ConfigSource).
func SecretConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: ConfigSource()}
}
