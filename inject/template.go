package inject

import (
	"encoding/json"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Ports of the sidecar, Istio's.
const (
	proxyUID         = 1337
	outboundPort     = "15001"
	inboundPort      = "15006"
	statusPort       = 15020 // pilot-agent: merged Prometheus stats, health
	readinessPort    = 15021
	envoyPromPort    = 15090
	tokenAudience    = "istio-ca"
	tokenExpiry      = 43200
	rootConfigMap    = "istio-ca-root-cert"
	crlConfigMap     = "istio-ca-crl"
	tokenVolume      = "istio-token"
	rootVolume       = "istiod-ca-cert"
	prometheusPath   = "/stats/prometheus"
	readinessPath    = "/healthz/ready"
	initLogLevelArg  = "--log_output_level=default:info"
	proxyLogLevelArg = "--proxyLogLevel=warning"
)

// reservedPorts are the ports the sidecar listens on in the pod's network
// namespace; an application container must not claim them.
var reservedPorts = map[int32]string{
	15000: "Envoy admin", 15001: "outbound capture", 15004: "debug", 15006: "inbound capture",
	15008: "HBONE", 15020: "pilot-agent status", 15021: "health", 15053: "DNS proxy", 15090: "Envoy Prometheus",
}

// sidecarVolume is a volume the template adds and where istio-proxy mounts it.
type sidecarVolume struct {
	volume    corev1.Volume
	mountPath string
}

// sidecarVolumes are the volumes the template adds, in Istio's order.
func sidecarVolumes() []sidecarVolume {
	empty := func(name string, medium corev1.StorageMedium) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: medium}}}
	}
	configMap := func(name, cm string, optional bool) corev1.Volume {
		src := &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}}
		if optional {
			src.Optional = ptr.To(true)
		}
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: src}}
	}
	podInfo := corev1.Volume{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		}}}}
	token := corev1.Volume{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Path: tokenVolume, ExpirationSeconds: ptr.To[int64](tokenExpiry), Audience: tokenAudience}}}}}}
	return []sidecarVolume{
		{empty("workload-socket", ""), "/var/run/secrets/workload-spiffe-uds"},
		{empty("credential-socket", ""), "/var/run/secrets/credential-uds"},
		{empty("workload-certs", ""), "/var/run/secrets/workload-spiffe-credentials"},
		{empty("istio-envoy", corev1.StorageMediumMemory), "/etc/istio/proxy"},
		{empty("istio-data", ""), "/var/lib/istio/data"},
		{podInfo, "/etc/istio/pod"},
		{token, "/var/run/secrets/tokens"},
		{configMap(rootVolume, rootConfigMap, false), "/var/run/secrets/istio"},
		{configMap("istio-ca-crl", crlConfigMap, true), "/var/run/secrets/istio/crl"},
	}
}

// initContainer is istio-init: istio-iptables sets up the capture as
// Istio's template does.
func initContainer(o options) corev1.Container {
	args := []string{"istio-iptables",
		"-p", outboundPort, "-z", inboundPort, "-u", "1337", "-m", o.mode,
		"-i", o.includeIPs, "-x", o.excludeIPs, "-b", o.includeInbound,
		"-d", excludedInbound(o.excludeInbound)}
	if o.hasIncludeOutbound {
		args = append(args, "-q", o.includeOutbound)
	}
	if o.hasExcludeOutbnd {
		args = append(args, "-o", o.excludeOutbound)
	}
	return corev1.Container{
		Name:      InitContainerName,
		Image:     o.image,
		Args:      append(args, initLogLevelArg),
		Resources: o.resources,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem:   ptr.To(false),
			RunAsGroup:               ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			RunAsUser:                ptr.To[int64](0),
		},
	}
}

// excludedInbound is the -d list: Envoy's stats and health ports, the
// status port, then the pod's own exclusions.
func excludedInbound(extra string) string {
	ports := []string{"15090", "15021", "15020"}
	for _, p := range splitList(extra) {
		if p != "15020" {
			ports = append(ports, p)
		}
	}
	return strings.Join(ports, ",")
}

// proxyContainer is istio-proxy: pilot-agent, which gets the workload
// certificate from CA_ADDR and starts Envoy with xDS from discoveryAddress.
func proxyContainer(cfg Config, o options, pod *corev1.Pod, w workload) corev1.Container {
	var mounts []corev1.VolumeMount
	for _, v := range sidecarVolumes() {
		mounts = append(mounts, corev1.VolumeMount{Name: v.volume.Name, MountPath: v.mountPath})
	}
	probe := func(period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: readinessPath, Port: intstr.FromInt32(readinessPort)}},
			PeriodSeconds: period, TimeoutSeconds: 3, FailureThreshold: failures,
		}
	}
	c := corev1.Container{
		Name:  ProxyContainerName,
		Image: o.image,
		Args: []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc." + cfg.TrustDomain,
			proxyLogLevelArg, "--proxyComponentLogLevel=misc:error", initLogLevelArg},
		Ports:           []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: envoyPromPort, Protocol: corev1.ProtocolTCP}},
		Env:             proxyEnv(cfg, o, pod, w),
		Resources:       o.resources,
		StartupProbe:    probe(1, 600),
		ReadinessProbe:  probe(15, 4),
		SecurityContext: proxySecurityContext(o.mode),
		VolumeMounts:    mounts,
	}
	if o.native {
		// Kept running beside the application; on shutdown, drain first.
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"pilot-agent", "request", "--debug-port=" + strconv.Itoa(statusPort), "POST", "drain"}}}}
	}
	return c
}

// proxySecurityContext runs the proxy as 1337 (the UID istio-iptables
// exempts from capture); TPROXY needs root and NET_ADMIN.
func proxySecurityContext(mode string) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Privileged:               ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsGroup:               ptr.To[int64](proxyUID),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](proxyUID),
	}
	if mode == modeTPROXY {
		sc.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		sc.RunAsNonRoot, sc.RunAsUser = ptr.To(false), ptr.To[int64](0)
	}
	return sc
}

// proxyEnv is istio-proxy's environment, Istio's names and order.
func proxyEnv(cfg Config, o options, pod *corev1.Pod, w workload) []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	limit := func(name, res string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: res, Divisor: resource.MustParse("1")}}}
	}
	value := func(name, v string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: v} }
	env := []corev1.EnvVar{
		value("PILOT_CERT_PROVIDER", "istiod"),
		value("CA_ADDR", cfg.DiscoveryAddress),
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("INSTANCE_IP", "status.podIP"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		field("HOST_IP", "status.hostIP"),
		limit("ISTIO_CPU_LIMIT", "limits.cpu"),
		value("PROXY_CONFIG", proxyConfigJSON(cfg)),
		value("ISTIO_META_POD_PORTS", podPortsJSON(pod)),
		value("ISTIO_META_APP_CONTAINERS", strings.Join(appContainers(pod), ",")),
		limit("GOMEMLIMIT", "limits.memory"),
		limit("GOMAXPROCS", "limits.cpu"),
		value("ISTIO_META_CLUSTER_ID", cfg.ClusterID),
		field("ISTIO_META_NODE_NAME", "spec.nodeName"),
		value("ISTIO_META_INTERCEPTION_MODE", o.mode),
		value("ISTIO_META_WORKLOAD_NAME", w.name),
		value("ISTIO_META_OWNER", w.owner()),
		value("ISTIO_META_MESH_ID", cfg.TrustDomain),
		value("TRUST_DOMAIN", cfg.TrustDomain),
	}
	return env
}

// proxyConfigJSON is PROXY_CONFIG: the fields that differ from pilot-agent's
// defaults (our discovery address).
func proxyConfigJSON(cfg Config) string {
	b, _ := json.Marshal(map[string]string{"discoveryAddress": cfg.DiscoveryAddress}) // a map of strings always marshals
	return string(b)
}

// podPortsJSON is ISTIO_META_POD_PORTS: every application container port.
func podPortsJSON(pod *corev1.Pod) string {
	ports := []corev1.ContainerPort{}
	for _, c := range pod.Spec.Containers {
		ports = append(ports, c.Ports...)
	}
	b, _ := json.Marshal(ports) // ContainerPort always marshals
	return string(b)
}

// appContainers are the names of the pod's own containers.
func appContainers(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Name != ProxyContainerName {
			names = append(names, c.Name)
		}
	}
	return names
}
