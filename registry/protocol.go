package registry

import "strings"

// portProtocol applies Istio's protocol selection for a Kubernetes Service
// port: appProtocol first, then the port name ("http", "http-web", ...),
// then the transport protocol (UDP stays UDP), else TCP.
func portProtocol(appProtocol *string, name, transport string) Protocol {
	if appProtocol != nil && *appProtocol != "" {
		switch strings.ToLower(*appProtocol) {
		case "kubernetes.io/h2c":
			return ProtocolHTTP2
		case "kubernetes.io/ws", "kubernetes.io/wss":
			return ProtocolHTTP
		}
		return ParseProtocol(*appProtocol)
	}
	if p, ok := protocolFromName(name); ok {
		return p
	}
	if strings.EqualFold(transport, "UDP") {
		return "UDP"
	}
	return ProtocolTCP
}

// protocolFromName reads the protocol prefix of an Istio port name.
func protocolFromName(name string) (Protocol, bool) {
	prefix, _, _ := strings.Cut(name, "-")
	if prefix == "" {
		return "", false
	}
	p := ParseProtocol(prefix)
	if p == ProtocolTCP && !strings.EqualFold(prefix, "tcp") {
		// "grpc-web" is the one protocol name with a dash in it.
		if strings.HasPrefix(strings.ToLower(name), "grpc-web") {
			return "GRPC-WEB", true
		}
		return "", false
	}
	if p == ProtocolGRPC && strings.HasPrefix(strings.ToLower(name), "grpc-web") {
		return "GRPC-WEB", true
	}
	return p, true
}

// entryPortProtocol is the protocol of a ServiceEntry port: the protocol
// field, else the name prefix, else TCP.
func entryPortProtocol(protocol, name string) Protocol {
	if protocol != "" {
		return ParseProtocol(protocol)
	}
	if p, ok := protocolFromName(name); ok {
		return p
	}
	return ProtocolTCP
}
