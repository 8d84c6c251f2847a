package registry_test

import (
	"testing"

	"github.com/librarymesh/controlplane/registry"
)

func TestPortServedOn(t *testing.T) {
	tests := []struct {
		name  string
		port  registry.Port
		named map[string]uint32
		want  uint32
	}{
		{"the backend names its own port", registry.Port{Name: "http", Number: 80, TargetPort: 8080}, map[string]uint32{"http": 9090}, 9090},
		{"a zero named port falls back", registry.Port{Name: "http", Number: 80, TargetPort: 8080}, map[string]uint32{"http": 0}, 8080},
		{"another name does not count", registry.Port{Name: "http", Number: 80}, map[string]uint32{"grpc": 9090}, 80},
		{"target port", registry.Port{Name: "http", Number: 80, TargetPort: 8080}, nil, 8080},
		{"the service port itself", registry.Port{Name: "tcp", Number: 5432}, nil, 5432},
	}
	for _, tt := range tests {
		if got := tt.port.ServedOn(tt.named); got != tt.want {
			t.Errorf("%s: ServedOn = %d, want %d", tt.name, got, tt.want)
		}
		ep := registry.Endpoint{Ports: tt.named}
		if got := ep.PortFor(tt.port); got != tt.want {
			t.Errorf("%s: Endpoint.PortFor = %d, want %d", tt.name, got, tt.want)
		}
	}
}
