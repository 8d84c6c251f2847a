package meshname

// Istio's names for automatic mTLS: whether an endpoint's workload has a
// sidecar (and so accepts Istio mTLS), and how Envoy matches it.
const (
	// TLSModeLabel is the workload label Istio's injector sets on pods
	// with a sidecar, and VMs carry (register and the VM bundle set it).
	TLSModeLabel = "security.istio.io/tlsMode"
	// TLSModeIstio is TLSModeLabel's value for a workload with a sidecar.
	TLSModeIstio = "istio"
	// TLSModeDisabled is TLSModeLabel's value for one without.
	TLSModeDisabled = "disabled"
	// SidecarStatusAnnotation is the annotation Istio's injector writes on
	// a pod it gave a sidecar.
	SidecarStatusAnnotation = "sidecar.istio.io/status"
	// TransportSocketMatchKey is the endpoint metadata filter key Envoy's
	// cluster transport_socket_matches look at.
	TransportSocketMatchKey = "envoy.transport_socket_match"
	// TLSModeMatchField is the field of TransportSocketMatchKey's metadata
	// holding the endpoint's TLS mode.
	TLSModeMatchField = "tlsMode"
	// TLSModeIstioMatch and TLSModeDisabledMatch name the cluster's
	// transport socket matches for mTLS and plaintext endpoints.
	TLSModeIstioMatch    = "tlsMode-istio"
	TLSModeDisabledMatch = "tlsMode-disabled"
)
