package meshname

import "strings"

// Gateway route configuration names, as Istio's gateways use them: plaintext
// HTTP servers of a port share `http.PORT`; each HTTPS server that
// terminates TLS has its own `https.PORT.PORTNAME.GATEWAY.NAMESPACE`.
func GatewayHTTPRoute(port uint32) string { return "http." + portString(port) }

// GatewayHTTPSRoute names an HTTPS server's route configuration.
func GatewayHTTPSRoute(port uint32, portName, gateway, namespace string) string {
	return "https." + portString(port) + "." + portName + "." + gateway + "." + namespace
}

// GatewayListener is a gateway's listener for a server port, `0.0.0.0_PORT`.
func GatewayListener(port uint32) string { return OutboundListener("", port) }

// BlackholeVirtualHost names the virtual host a gateway route configuration
// gets when no VirtualService binds a host to it (every request: 404).
func BlackholeVirtualHost(port uint32) string { return "blackhole:" + portString(port) }

// GatewayVirtualHost is `HOST:PORT`, a host of a gateway route configuration.
func GatewayVirtualHost(host string, port uint32) string { return host + ":" + portString(port) }

// Gateway credentials travel over SDS under Istio's names: the Secret NAME
// of the gateway proxy's namespace is `kubernetes://NAME` (or
// `kubernetes://NAMESPACE/NAME`), its CA `kubernetes://NAME-cacert`.
const (
	credentialPrefix = "kubernetes://"
	// CASecretSuffix marks the CA of a credential (Istio's SdsCaSuffix).
	CASecretSuffix = "-cacert"
)

// CredentialSecret names the SDS secret of a gateway credential.
func CredentialSecret(name string) string { return credentialPrefix + name }

// CredentialCASecret names the SDS secret of a credential's CA.
func CredentialCASecret(name string) string { return credentialPrefix + name + CASecretSuffix }

// ParseCredentialSecret reads an SDS name made by CredentialSecret or
// CredentialCASecret: the Secret's namespace (defaultNS when the name has
// none), its name, and whether the CA is asked for. ok is false for a name
// that is not a gateway credential (e.g. `default`, `ROOTCA`).
func ParseCredentialSecret(sds, defaultNS string) (namespace, name string, ca, ok bool) {
	rest, found := strings.CutPrefix(sds, credentialPrefix)
	if !found || rest == "" {
		return "", "", false, false
	}
	namespace, name = defaultNS, rest
	if ns, n, slash := strings.Cut(rest, "/"); slash {
		namespace, name = ns, n
	}
	if base, isCA := strings.CutSuffix(name, CASecretSuffix); isCA && base != "" {
		name, ca = base, true
	}
	if namespace == "" || name == "" || strings.Contains(name, "/") {
		return "", "", false, false
	}
	return namespace, name, ca, true
}
