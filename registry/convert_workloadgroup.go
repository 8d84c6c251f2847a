package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Problem reasons of a WorkloadGroup.
const (
	ReasonInvalidProbe    = "InvalidProbe"
	ReasonInvalidTemplate = "InvalidTemplate"
)

// convertWorkloadGroup converts the WorkloadGroup kind (any version).
func (c *converter) convertWorkloadGroup(key ObjectKey, obj runtime.Object, p *problems) (*record, bool) {
	var spec *networkingapi.WorkloadGroup
	switch o := obj.(type) {
	case *networkingv1.WorkloadGroup:
		spec = &o.Spec
	case *networkingv1beta1.WorkloadGroup:
		spec = &o.Spec
	case *networkingv1alpha3.WorkloadGroup:
		spec = &o.Spec
	default:
		return nil, false
	}
	return workloadGroup(key, spec, obj, p), true
}

// workloadGroup converts a WorkloadGroup. A bad template or probe rejects
// the object; its last good version stays in force.
func workloadGroup(key ObjectKey, in *networkingapi.WorkloadGroup, obj runtime.Object, p *problems) *record {
	g := &WorkloadGroup{Namespace: key.Namespace, Name: key.Name, Created: creationTime(obj),
		Labels: maps.Clone(in.GetMetadata().GetLabels()), Annotations: maps.Clone(in.GetMetadata().GetAnnotations())}
	if m, err := meta.Accessor(obj); err == nil {
		g.UID = string(m.GetUID())
	}
	if gvk := obj.GetObjectKind().GroupVersionKind(); gvk.Version != "" {
		g.APIVersion = gvk.GroupVersion().String()
	}
	checkLabels("spec.metadata.labels", g.Labels, p)
	g.Template = workloadTemplate(in.GetTemplate(), p)
	if in.GetProbe() != nil {
		g.Probe = probe("spec.probe", in.GetProbe(), p)
	}
	return &record{Policies: []*policyRow{{Namespace: key.Namespace, WorkloadGroup: g}}}
}

// workloadTemplate checks spec.template: no address (each VM brings its
// own), valid ports, labels and service account.
func workloadTemplate(t *networkingapi.WorkloadEntry, p *problems) WorkloadTemplate {
	const field = "spec.template"
	if t == nil {
		p.add(field, ReasonInvalidTemplate, "a WorkloadGroup needs a template (at least its serviceAccount)")
		return WorkloadTemplate{}
	}
	if t.GetAddress() != "" {
		p.add(field+".address", ReasonInvalidTemplate, "address %q must not be set: each VM of the group registers its own", t.GetAddress())
	}
	for _, name := range slices.Sorted(maps.Keys(t.GetPorts())) {
		if n := t.GetPorts()[name]; n == 0 || n > 65535 {
			p.add(fmt.Sprintf("%s.ports[%s]", field, name), "InvalidPort", "port %d is not in 1-65535", n)
		}
	}
	if sa := t.GetServiceAccount(); sa != "" && len(validation.IsDNS1123Subdomain(sa)) > 0 {
		p.add(field+".serviceAccount", ReasonInvalidTemplate, "%q is not a valid service account name", sa)
	}
	checkLabels(field+".labels", t.GetLabels(), p)
	return WorkloadTemplate{Labels: maps.Clone(t.GetLabels()), Ports: maps.Clone(t.GetPorts()),
		ServiceAccount: t.GetServiceAccount(), Network: t.GetNetwork(), Locality: t.GetLocality(), Weight: t.GetWeight()}
}

// checkLabels checks label keys and values as Kubernetes does.
func checkLabels(field string, labels map[string]string, p *problems) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			p.add(field+"["+k+"]", "InvalidLabel", "label key %q: %s", k, strings.Join(errs, "; "))
		} else if errs := validation.IsValidLabelValue(labels[k]); len(errs) > 0 {
			p.add(field+"["+k+"]", "InvalidLabel", "label value %q: %s", labels[k], strings.Join(errs, "; "))
		}
	}
}

// probe converts spec.probe: exactly one method, non-negative times and
// thresholds (unset ones get Kubernetes' defaults).
func probe(field string, in *networkingapi.ReadinessProbe, p *problems) *Probe {
	out := &Probe{
		InitialDelay:     probeSeconds(field+".initialDelaySeconds", in.GetInitialDelaySeconds(), 0, p),
		Timeout:          probeSeconds(field+".timeoutSeconds", in.GetTimeoutSeconds(), DefaultProbeTimeout, p),
		Period:           probeSeconds(field+".periodSeconds", in.GetPeriodSeconds(), DefaultProbePeriod, p),
		SuccessThreshold: probeThreshold(field+".successThreshold", in.GetSuccessThreshold(), DefaultProbeSuccessThreshold, p),
		FailureThreshold: probeThreshold(field+".failureThreshold", in.GetFailureThreshold(), DefaultProbeFailureThreshold, p),
	}
	switch m := in.GetHealthCheckMethod().(type) {
	case *networkingapi.ReadinessProbe_HttpGet:
		out.HTTPGet = httpGetProbe(field+".httpGet", m.HttpGet, p)
	case *networkingapi.ReadinessProbe_TcpSocket:
		out.TCPSocket = &TCPSocketProbe{Host: m.TcpSocket.GetHost(), Port: m.TcpSocket.GetPort()}
		checkProbePort(field+".tcpSocket.port", out.TCPSocket.Port, p)
	case *networkingapi.ReadinessProbe_Exec:
		out.Exec = &ExecProbe{Command: slices.Clone(m.Exec.GetCommand())}
		if len(out.Exec.Command) == 0 || out.Exec.Command[0] == "" {
			p.add(field+".exec.command", ReasonInvalidProbe, "an exec probe needs a command")
		}
	case *networkingapi.ReadinessProbe_Grpc:
		p.add(field+".grpc", ReasonInvalidProbe, "grpc probes are not supported; use httpGet, tcpSocket or exec")
	default:
		p.add(field, ReasonInvalidProbe, "a probe needs one of httpGet, tcpSocket or exec")
	}
	return out
}

func httpGetProbe(field string, in *networkingapi.HTTPHealthCheckConfig, p *problems) *HTTPGetProbe {
	out := &HTTPGetProbe{Path: in.GetPath(), Port: in.GetPort(), Host: in.GetHost(), Scheme: strings.ToUpper(in.GetScheme())}
	checkProbePort(field+".port", out.Port, p)
	switch out.Scheme {
	case "":
		out.Scheme = "HTTP"
	case "HTTP", "HTTPS":
	default:
		p.add(field+".scheme", ReasonInvalidProbe, "scheme %q is neither HTTP nor HTTPS", in.GetScheme())
	}
	if out.Path != "" && !strings.HasPrefix(out.Path, "/") {
		p.add(field+".path", ReasonInvalidProbe, "path %q must start with /", out.Path)
	}
	for i, h := range in.GetHttpHeaders() {
		if h.GetName() == "" || strings.ContainsAny(h.GetName(), " :\r\n") {
			p.add(fmt.Sprintf("%s.httpHeaders[%d].name", field, i), ReasonInvalidProbe, "%q is not a valid header name", h.GetName())
			continue
		}
		out.Headers = append(out.Headers, HTTPHeader{Name: h.GetName(), Value: h.GetValue()})
	}
	return out
}

func checkProbePort(field string, port uint32, p *problems) {
	if port == 0 || port > 65535 {
		p.add(field, ReasonInvalidProbe, "port %d is not in 1-65535", port)
	}
}

func probeSeconds(field string, s int32, def time.Duration, p *problems) time.Duration {
	switch {
	case s < 0:
		p.add(field, ReasonInvalidProbe, "%d is negative", s)
	case s == 0:
		return def
	}
	return time.Duration(s) * time.Second
}

func probeThreshold(field string, n, def int32, p *problems) int {
	switch {
	case n < 0:
		p.add(field, ReasonInvalidProbe, "%d is negative", n)
	case n == 0:
		return int(def)
	}
	return int(n)
}
