package registry

import (
	"github.com/librarymesh/controlplane/meshname"
)

// ReasonUnknownTLSMode is a security.istio.io/tlsMode label that is neither
// "istio" nor "disabled". It does not block the object: the workload is
// taken to have no sidecar, so automatic mTLS reaches it in plaintext.
const ReasonUnknownTLSMode = "UnknownTLSMode"

// workloadTLSMode is a workload's TLS mode (see Workload.TLSMode) from its
// labels (at field, e.g. "spec.labels") and, for pods, annotations: the
// label wins; without it a pod that Istio's injector annotated has a
// sidecar. An unknown label value is a problem (a warning).
func workloadTLSMode(field string, labels, annotations map[string]string, p *problems) string {
	v, ok := labels[meshname.TLSModeLabel]
	switch {
	case !ok:
		if _, injected := annotations[meshname.SidecarStatusAnnotation]; injected {
			return meshname.TLSModeIstio
		}
		return ""
	case v == meshname.TLSModeIstio:
		return meshname.TLSModeIstio
	case v == meshname.TLSModeDisabled || v == "": // Istio reads an empty value as disabled
		return ""
	}
	p.add(field+"["+meshname.TLSModeLabel+"]", ReasonUnknownTLSMode,
		"label %s is %q; only %q (the workload has a sidecar: automatic mTLS reaches it with Istio mTLS) and %q are known: it is reached in plaintext",
		meshname.TLSModeLabel, v, meshname.TLSModeIstio, meshname.TLSModeDisabled)
	return ""
}
