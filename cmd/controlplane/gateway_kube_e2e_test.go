package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/librarymesh/controlplane/internal/e2e"
	"github.com/librarymesh/controlplane/internal/kubetest"
)

const (
	gwNS         = "istio-system"
	gwCredential = "bookinfo-cert"
	gwSecretName = "kubernetes://" + gwCredential
)

// TestKubeGatewayCredentialsNeedSecretAccess: a Gateway terminating HTTPS
// with credentialName, its Secret and RBAC objects in a real kube-apiserver
// (which evaluates RBAC). The router proxy whose service account a Role lets
// read Secrets of its namespace gets the certificate and key over SDS; the
// one whose service account may not gets no secret, and the server logs the
// refusal naming the secret and the SubjectAccessReview's answer. The key
// never shows in /debug/config_dump. Once a RoleBinding grants the second
// one access too, it gets the credential without reconnecting (rechecked
// every --gateway-secret-recheck).
func TestKubeGatewayCredentialsNeedSecretAccess(t *testing.T) {
	e, srv := kubeServe(t, "--gateway-secret-recheck", "2s")
	certPEM, keyPEM := selfSignedPEM(t, "bookinfo.example.com")
	createGatewayObjects(t, e, certPEM, keyPEM)
	grantSecretReader(t, e, "gw-reader")

	allowed := routerNode(t, "10.8.1.7", "ingress-0", "gw-reader")
	var got *tlsv3.Secret
	e2e.Eventually(t, "the allowed gateway to get its credential over SDS", 30*time.Second, func() bool {
		got = firstSecret(t, srv.GRPCAddr, allowed, 3*time.Second)
		return got != nil
	})
	if tc := got.GetTlsCertificate(); string(tc.GetPrivateKey().GetInlineBytes()) != string(keyPEM) || string(tc.GetCertificateChain().GetInlineBytes()) != string(certPEM) {
		t.Errorf("SDS %s does not carry the Secret's certificate and key", gwSecretName)
	}

	denied := routerNode(t, "10.8.1.8", "ingress-1", "gw-other")
	stream := e2e.ADSStream(t, srv.GRPCAddr)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: denied, TypeUrl: resourcev3.SecretType, ResourceNames: []string{gwSecretName}}); err != nil {
		t.Fatal(err)
	}
	srv.WaitLog(t, `secret=`+gwSecretName+` error="service account istio-system/gw-other: may not list secrets in namespace istio-system`, 20*time.Second)
	if s := firstSecret(t, srv.GRPCAddr, denied, 2*time.Second); s != nil {
		t.Errorf("gateway without Secret access got %s", s.GetName())
	}
	granted := secretsFrom(stream)
	bindSecretReader(t, e, "gw-other")
	select {
	case s := <-granted:
		t.Logf("after the RoleBinding the second gateway got %s on its open stream", s.GetName())
	case <-time.After(20 * time.Second):
		t.Errorf("the second gateway did not get %s within 20s of being granted access:\n%s", gwSecretName, srv.Logs())
	}

	dump := e2e.HTTPGet(t, "http://"+srv.HTTPAddr+"/debug/config_dump?proxyID="+allowed.GetId())
	if !strings.Contains(dump, "[redacted]") || strings.Contains(dump, base64.StdEncoding.EncodeToString(keyPEM)) || strings.Contains(dump, string(keyPEM[30:60])) {
		t.Errorf("config_dump of the allowed gateway shows its private key or no redaction:\n%.2000s", dump)
	}
}

// routerNode is an ingress gateway Envoy in istio-system claiming sa.
func routerNode(t *testing.T, ip, name, sa string) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": gwNS, "SERVICE_ACCOUNT": sa,
		"LABELS": map[string]any{"istio": "ingressgateway"}})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: "router~" + ip + "~" + name + "." + gwNS + "~" + gwNS + ".svc.cluster.local", Metadata: md}
}

// firstSecret asks for the credential on a new ADS stream and returns it
// from the first response that holds it, or nil after timeout.
func firstSecret(t *testing.T, addr string, node *corev3.Node, timeout time.Duration) *tlsv3.Secret {
	t.Helper()
	stream := e2e.ADSStream(t, addr)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: []string{gwSecretName}}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-secretsFrom(stream):
		return s
	case <-time.After(timeout):
		return nil
	}
}

// secretsFrom reads stream until a response holds the credential and sends
// it on the channel (which stays empty if none ever does).
func secretsFrom(stream e2e.ADSClient) <-chan *tlsv3.Secret {
	found := make(chan *tlsv3.Secret, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			for _, a := range resp.GetResources() {
				s := &tlsv3.Secret{}
				if a.UnmarshalTo(s) == nil && s.GetName() == gwSecretName {
					found <- s
					return
				}
			}
		}
	}()
	return found
}

func createGatewayObjects(t *testing.T, e *kubetest.Env, certPEM, keyPEM []byte) {
	t.Helper()
	ctx := t.Context()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: gwCredential}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}}
	if _, err := e.Kube.CoreV1().Secrets(gwNS).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gw := &networkingv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "bookinfo"}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gw.Spec.Servers = []*networkingapi.Server{{
		Port:  &networkingapi.Port{Number: 443, Name: "https", Protocol: "HTTPS"},
		Hosts: []string{"bookinfo.example.com"},
		Tls:   &networkingapi.ServerTLSSettings{Mode: networkingapi.ServerTLSSettings_SIMPLE, CredentialName: gwCredential},
	}}
	if _, err := e.Istio.NetworkingV1().Gateways(gwNS).Create(ctx, gw, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// grantSecretReader lets service account sa of istio-system read its
// namespace's Secrets, as Istio's gateway chart does (Role + RoleBinding).
func grantSecretReader(t *testing.T, e *kubetest.Env, sa string) {
	t.Helper()
	ctx, rbac := t.Context(), e.Kube.RbacV1()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "gateway-sds"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "watch", "list"}}}}
	if _, err := rbac.Roles(gwNS).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bindSecretReader(t, e, sa)
}

// bindSecretReader binds grantSecretReader's Role to service account sa.
func bindSecretReader(t *testing.T, e *kubetest.Env, sa string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: gwNS, Name: "gateway-sds-" + sa},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "gateway-sds"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: gwNS, Name: sa}}}
	if _, err := e.Kube.RbacV1().RoleBindings(gwNS).Create(t.Context(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// selfSignedPEM makes a throwaway P-256 certificate for host and its key.
func selfSignedPEM(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}
