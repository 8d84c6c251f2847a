package snapshot

import (
	"bytes"
	"encoding/base64"
	"os"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/librarymesh/controlplane/meshname"
)

// TestGatewayPassthroughIsTheOverlay keeps the gateway-passthrough case's
// Gateway and VirtualService those of deploy/overlays/gateway.
func TestGatewayPassthroughIsTheOverlay(t *testing.T) {
	overlay, err := os.ReadFile("../deploy/overlays/gateway/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := os.ReadFile("testdata/gateway-passthrough/mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(mesh, append([]byte("# deploy/overlays/gateway/gateway.yaml\n"), overlay...)) {
		t.Error("testdata/gateway-passthrough/mesh.yaml does not end with deploy/overlays/gateway/gateway.yaml; copy it there and run go test ./snapshot -update")
	}
}

// TestGatewayCredentialServed checks what the goldens show redacted: the
// router proxy's SDS secrets carry the Secrets' certificate, key and CA as
// they are, and RedactSecret leaves no trace of the key.
func TestGatewayCredentialServed(t *testing.T) {
	view, _ := loadMesh(t, "testdata/gateway-https/mesh.yaml")
	const node = "router~10.8.1.7~istio-ingressgateway-7d9f.istio-system~istio-system.svc.cluster.local"
	res, err := NewBuilder(view, Options{}).Build(mustProxy(t, node, map[string]any{"NAMESPACE": "istio-system", "LABELS": map[string]any{"istio": "ingressgateway"}}))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]*tlsv3.Secret{}
	for _, r := range res.Secrets {
		s := r.(*tlsv3.Secret)
		secrets[s.GetName()] = s
	}
	for _, name := range []string{"bookinfo-cert", "bookinfo-mtls"} {
		want := view.Credential("istio-system", name)
		s := secrets[meshname.CredentialSecret(name)]
		if want == nil || s == nil {
			t.Fatalf("%s: credential %v, secret %v", name, want, s)
		}
		tc := s.GetTlsCertificate()
		if !bytes.Equal(tc.GetPrivateKey().GetInlineBytes(), want.Key) || !bytes.Equal(tc.GetCertificateChain().GetInlineBytes(), want.Cert) {
			t.Errorf("%s: the SDS secret does not carry the Secret's certificate and key", name)
		}
		js, err := protojson.Marshal(RedactSecret(s))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(js, want.Key) || strings.Contains(string(js), b64(want.Key)) || !strings.Contains(string(js), RedactedKey) {
			t.Errorf("%s: redacted secret still shows the key: %s", name, js)
		}
		if tc.GetPrivateKey() == nil {
			t.Errorf("%s: RedactSecret modified the cached secret", name)
		}
	}
	ca := secrets[meshname.CredentialCASecret("bookinfo-mtls")]
	if want := view.Credential("istio-system", "bookinfo-mtls-cacert"); ca == nil || !bytes.Equal(ca.GetValidationContext().GetTrustedCa().GetInlineBytes(), want.CA) {
		t.Errorf("kubernetes://bookinfo-mtls-cacert does not carry the CA of Secret bookinfo-mtls-cacert: %v", ca)
	}
	if _, ok := secrets[meshname.CredentialSecret("no-such-secret")]; ok {
		t.Error("a Secret of the Gateway's namespace was served; credentials come from the proxy's namespace")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A sidecar is never given gateway config, whatever its labels.
func TestGatewayConfigOnlyForRouters(t *testing.T) {
	view, _ := loadMesh(t, "testdata/gateway-passthrough/mesh.yaml")
	p := mustProxy(t, "sidecar~10.8.1.7~istio-ingressgateway-7d9f.istio-system~istio-system.svc.cluster.local",
		map[string]any{"NAMESPACE": "istio-system", "LABELS": map[string]any{"istio": "ingressgateway"}})
	b := NewBuilder(view, Options{})
	if k := b.Classify(p); k != PodSidecar {
		t.Fatalf("kind %v, want pod-sidecar", k)
	}
	res, err := b.Build(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Listeners {
		l := r.(*listenerv3.Listener)
		for _, c := range l.GetFilterChains() {
			if len(c.GetFilterChainMatch().GetServerNames()) > 0 {
				t.Errorf("sidecar got the gateway-only TLS route: listener %s chain %s", l.GetName(), c.GetName())
			}
		}
	}
	if len(res.Secrets) > 0 {
		t.Errorf("sidecar got %d secrets over ADS", len(res.Secrets))
	}
}
