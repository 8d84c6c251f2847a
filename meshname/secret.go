package meshname

// SDS secret names the node agent serves on SDSCluster, as Istio's agent does.
const (
	WorkloadSecret = "default"
	RootSecret     = "ROOTCA"
)

// grpc-go certificate provider instance (from the client's bootstrap
// certificate_providers) and certificate names, as Istio's agent writes them.
const (
	GRPCProviderInstance = "default"
	GRPCIdentityCert     = "default"
	GRPCRootCert         = "ROOTCA"
)
