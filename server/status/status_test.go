package status

import (
	"regexp"
	"strings"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestWriteTableStates(t *testing.T) {
	tests := []struct {
		name string
		g    *statusv3.ClientConfig_GenericXdsConfig
		want string
	}{
		{"acked", &statusv3.ClientConfig_GenericXdsConfig{VersionInfo: "v1", ConfigStatus: statusv3.ConfigStatus_SYNCED, ClientStatus: adminv3.ClientResourceStatus_ACKED}, "SYNCED (v1)"},
		{"sent not acked", &statusv3.ClientConfig_GenericXdsConfig{VersionInfo: "v2", ConfigStatus: statusv3.ConfigStatus_STALE, ClientStatus: adminv3.ClientResourceStatus_REQUESTED}, "STALE (v2)"},
		{"nacked", &statusv3.ClientConfig_GenericXdsConfig{VersionInfo: "v1", ConfigStatus: statusv3.ConfigStatus_ERROR, ClientStatus: adminv3.ClientResourceStatus_NACKED,
			ErrorState: &adminv3.UpdateFailureState{VersionInfo: "v3", Details: "bad lb"}}, "NACKED (v3)"},
		{"not sent", &statusv3.ClientConfig_GenericXdsConfig{ConfigStatus: statusv3.ConfigStatus_NOT_SENT}, "NOT SENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.g.TypeUrl = resourcev3.ClusterType
			// A second, synced resource of the same type: the worse one wins.
			gs := []*statusv3.ClientConfig_GenericXdsConfig{tc.g}
			if tc.g.ConfigStatus != statusv3.ConfigStatus_NOT_SENT {
				gs = append(gs, &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: resourcev3.ClusterType, VersionInfo: "v1", ConfigStatus: statusv3.ConfigStatus_SYNCED})
			}
			resp := &statusv3.ClientStatusResponse{Config: []*statusv3.ClientConfig{{
				Node:              &corev3.Node{Id: "sidecar~127.0.0.1~a.default~default.svc.cluster.local"},
				GenericXdsConfigs: gs,
			}}}
			var b strings.Builder
			if err := WriteTable(&b, FromResponse(resp)); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(b.String(), "\n")
			if len(lines) < 2 || !regexp.MustCompile(`\s-\s+`+regexp.QuoteMeta(tc.want)+`\s`).MatchString(lines[1]) {
				t.Errorf("table:\n%s\nwant CDS column %q", b.String(), tc.want)
			}
			if tc.name == "nacked" && !strings.Contains(b.String(), "CDS NACKED version v3: bad lb") {
				t.Errorf("table:\n%s\nwant the NACK error below it", b.String())
			}
		})
	}
}
