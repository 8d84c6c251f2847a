package inject

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Pod annotations the template reads, Istio's names.
const (
	annoInterceptionMode = "sidecar.istio.io/interceptionMode"
	annoNativeSidecar    = "sidecar.istio.io/nativeSidecar"
	annoProxyImage       = "sidecar.istio.io/proxyImage"
	annoProxyCPU         = "sidecar.istio.io/proxyCPU"
	annoProxyMemory      = "sidecar.istio.io/proxyMemory"
	annoProxyCPULimit    = "sidecar.istio.io/proxyCPULimit"
	annoProxyMemoryLimit = "sidecar.istio.io/proxyMemoryLimit"
	annoIncludeIPs       = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	annoExcludeIPs       = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	annoIncludeInbound   = "traffic.sidecar.istio.io/includeInboundPorts"
	annoExcludeInbound   = "traffic.sidecar.istio.io/excludeInboundPorts"
	annoIncludeOutbound  = "traffic.sidecar.istio.io/includeOutboundPorts"
	annoExcludeOutbound  = "traffic.sidecar.istio.io/excludeOutboundPorts"
)

// Interception modes (sidecar.istio.io/interceptionMode).
const (
	modeRedirect = "REDIRECT"
	modeTPROXY   = "TPROXY"
	modeNone     = "NONE"
)

// options are a pod's sidecar settings: Istio's defaults, overridden by
// the pod's annotations.
type options struct {
	mode                                 string
	image                                string
	includeIPs, excludeIPs               string
	includeInbound, excludeInbound       string
	includeOutbound, excludeOutbound     string
	hasIncludeOutbound, hasExcludeOutbnd bool
	native                               bool // istio-proxy as a native sidecar
	resources                            corev1.ResourceRequirements
}

// parseOptions reads the pod's annotations; a bad value is an error naming
// the annotation.
func parseOptions(cfg Config, pod *corev1.Pod) (options, error) {
	a := pod.Annotations
	o := options{
		mode:           valueOr(a[annoInterceptionMode], modeRedirect),
		image:          cfg.ProxyImage(),
		includeIPs:     valueOr(a[annoIncludeIPs], "*"),
		excludeIPs:     a[annoExcludeIPs],
		includeInbound: valueOr(a[annoIncludeInbound], "*"),
		excludeInbound: a[annoExcludeInbound],
	}
	o.native = cfg.NativeSidecars
	if v, ok := a[annoNativeSidecar]; ok {
		o.native = v != "false" // Istio's reading: anything but "false" turns it on
	}
	o.includeOutbound, o.hasIncludeOutbound = a[annoIncludeOutbound]
	o.excludeOutbound, o.hasExcludeOutbnd = a[annoExcludeOutbound]
	if img := a[annoProxyImage]; strings.Contains(img, "/") {
		o.image = img
	}
	errs := []error{
		annotationErr(annoInterceptionMode, checkMode(o.mode)),
		annotationErr(annoIncludeIPs, checkCIDRs(o.includeIPs, true)),
		annotationErr(annoExcludeIPs, checkCIDRs(o.excludeIPs, false)),
		annotationErr(annoIncludeInbound, checkPorts(o.includeInbound, true)),
		annotationErr(annoExcludeInbound, checkPorts(o.excludeInbound, false)),
		annotationErr(annoIncludeOutbound, checkPorts(o.includeOutbound, false)),
		annotationErr(annoExcludeOutbound, checkPorts(o.excludeOutbound, false)),
	}
	res, err := proxyResources(a)
	o.resources = res
	return o, errors.Join(append(errs, err)...)
}

func valueOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// annotationErr names the annotation an error is about (nil stays nil).
func annotationErr(key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("metadata.annotations[%s]: %w", key, err)
}

func checkMode(mode string) error {
	switch mode {
	case modeRedirect, modeTPROXY, modeNone:
		return nil
	}
	return fmt.Errorf("%q is not REDIRECT, TPROXY or NONE", mode)
}

// checkCIDRs checks a comma-separated list of CIDRs ("*" for all when
// star is allowed).
func checkCIDRs(list string, star bool) error {
	for _, item := range splitList(list) {
		if item == "*" && star {
			continue
		}
		if _, err := netip.ParsePrefix(item); err != nil {
			return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", item)
		}
	}
	return nil
}

// checkPorts checks a comma-separated list of ports ("*" for all when star
// is allowed).
func checkPorts(list string, star bool) error {
	for _, item := range splitList(list) {
		if item == "*" && star {
			continue
		}
		if n, err := strconv.Atoi(item); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a port number (1-65535)", item)
		}
	}
	return nil
}

// splitList splits a comma-separated list, dropping spaces and empty items.
func splitList(list string) []string {
	var out []string
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// proxyResources are Istio's default sidecar requests and limits, or the
// ones the pod's annotations ask for (then only those, as Istio does).
func proxyResources(a map[string]string) (corev1.ResourceRequirements, error) {
	keys := []struct {
		anno  string
		limit bool
		name  corev1.ResourceName
	}{
		{annoProxyCPU, false, corev1.ResourceCPU}, {annoProxyMemory, false, corev1.ResourceMemory},
		{annoProxyCPULimit, true, corev1.ResourceCPU}, {annoProxyMemoryLimit, true, corev1.ResourceMemory},
	}
	var r corev1.ResourceRequirements
	var errs []error
	for _, k := range keys {
		v, ok := a[k.anno]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, annotationErr(k.anno, fmt.Errorf("%q is not a quantity such as 100m or 128Mi", v)))
			continue
		}
		list := &r.Requests
		if k.limit {
			list = &r.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[k.name] = q
	}
	if r.Requests == nil && r.Limits == nil {
		r = defaultResources()
	}
	return r, errors.Join(errs...)
}

// defaultResources are Istio's global.proxy.resources.
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
}
