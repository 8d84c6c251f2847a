package server

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// xdsTypes are the types a proxy snapshot holds, in the order Envoy wants
// them (make before break). A type's place in it is its typeIndex.
// VHDS (virtual hosts of Envoy sidecars on delta ADS streams) comes after
// the route configurations that name it and the clusters its routes name.
var xdsTypes = [...]string{
	resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType,
	resourcev3.RouteType, resourcev3.SecretType, resourcev3.VirtualHostType,
}

// shortTypes name xdsTypes in logs, metrics and debug views.
var shortTypes = [numTypes]string{"cds", "eds", "lds", "rds", "sds", "vhds"}

// vhdsIndex is VirtualHost's typeIndex: its subscriptions name route
// configurations (see subscription.namespaces).
const vhdsIndex = 5

// numTypes is how many types a snapshot holds.
const numTypes = len(xdsTypes)

// typeMask holds a bit per typeIndex.
type typeMask uint8

// typeValues holds one string per xDS type, by typeIndex.
type typeValues [numTypes]string

func (v *typeValues) empty() bool { return *v == typeValues{} }

// typeIndex is a type's place in xdsTypes, or -1.
func typeIndex(typeURL string) int {
	for i, t := range xdsTypes {
		if t == typeURL {
			return i
		}
	}
	return -1
}

// shortType names a type URL for logs, metrics and debug views.
func shortType(typeURL string) string {
	if i := typeIndex(typeURL); i >= 0 {
		return shortTypes[i]
	}
	return typeURL
}

// FNV-1a's 64-bit constants, for the content sums of resource lists.
const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
)
