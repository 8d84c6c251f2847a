package registry_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/librarymesh/controlplane/registry"
)

// vsFromYAML reads a VirtualService spec written as in a manifest.
func vsFromYAML(t *testing.T, name, spec string) *networkingv1.VirtualService {
	t.Helper()
	vs := &networkingv1.VirtualService{ObjectMeta: meta(name)}
	if err := yaml.Unmarshal([]byte(spec), &vs.Spec); err != nil {
		t.Fatalf("spec of %s: %v", name, err)
	}
	return vs
}

func TestVirtualServiceConversion(t *testing.T) {
	s := registry.NewStore(nil)
	vs := vsFromYAML(t, "inventory", `
hosts: [inventory]
http:
- name: canary
  match:
  - headers: {x-canary: {exact: "yes"}}
    uri: {prefix: /api}
    ignoreUriCase: true
  route:
  - destination: {host: inventory, subset: v2}
  timeout: 2s
  retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "unavailable,503"}
  fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
- route:
  - destination: {host: inventory, subset: v1}
    weight: 80
  - destination: {host: inventory, subset: v2}
    weight: 20
`)
	if ps := s.Upsert("kube", vs); len(ps) != 0 {
		t.Fatal(ps)
	}
	got := s.View().VirtualServices()
	if len(got) != 1 {
		t.Fatalf("virtual services = %v", got)
	}
	timeout := 2 * time.Second
	host := "inventory.default.svc.cluster.local"
	want := registry.HTTPRoute{Name: "canary", Field: "spec.http[0]",
		Matches: []registry.HTTPMatch{{URI: &registry.StringMatch{Kind: registry.MatchPrefix, Value: "/api"}, IgnoreURICase: true,
			Headers: []registry.KeyMatch{{Name: "x-canary", Match: &registry.StringMatch{Value: "yes"}}}}},
		Route:   []registry.Destination{{Host: host, Subset: "v2", Field: "spec.http[0].route[0]"}},
		Timeout: &timeout,
		Retries: &registry.Retries{Attempts: 3, PerTryTimeout: 500 * time.Millisecond,
			RetryOn: []string{"unavailable", "retriable-status-codes"}, StatusCodes: []uint32{503}},
		Abort: &registry.FaultAbort{HTTPStatus: 503, Percent: 10},
	}
	if g := got[0]; !reflect.DeepEqual(g.Hosts, []string{host}) || !reflect.DeepEqual(g.HTTP[0], want) || len(g.HTTP[1].Route) != 2 {
		t.Errorf("virtual service = %+v\nhttp[0] = %+v\nwant     %+v", g, g.HTTP[0], want)
	}
}

// TestVirtualServiceProblems: each bad field is a problem naming the
// field, and the object is refused (its last good version stays).
func TestVirtualServiceProblems(t *testing.T) {
	route := "\n  route: [{destination: {host: a}}]"
	for _, tc := range []struct{ name, spec, field, reason string }{
		{"no hosts", "http:\n- route: [{destination: {host: a}}]", "spec.hosts", "MissingHosts"},
		{"no routes", "hosts: [a]", "spec", "NoRoutes"},
		{"bad regex", "hosts: [a]\nhttp:\n- match: [{uri: {regex: \"(\"}}]" + route, "spec.http[0].match[0].uri.regex", "InvalidRegex"},
		{"weights", "hosts: [a]\nhttp:\n- route: [{destination: {host: a}, weight: 50}, {destination: {host: b}, weight: 40}]",
			"spec.http[0].route", "InvalidWeight"},
		{"negative timeout", "hosts: [a]\nhttp:\n- timeout: -1s" + route, "spec.http[0].timeout", "InvalidDuration"},
		{"per try timeout", "hosts: [a]\nhttp:\n- retries: {attempts: 1, perTryTimeout: -2s}" + route,
			"spec.http[0].retries.perTryTimeout", "InvalidDuration"},
		{"retry on", "hosts: [a]\nhttp:\n- retries: {attempts: 1, retryOn: sometimes}" + route, "spec.http[0].retries.retryOn", "InvalidRetryOn"},
		{"abort status", "hosts: [a]\nhttp:\n- fault: {abort: {httpStatus: 700}}" + route, "spec.http[0].fault.abort.httpStatus", "InvalidStatus"},
		{"grpc status", "hosts: [a]\nhttp:\n- fault: {abort: {grpcStatus: NOPE}}" + route, "spec.http[0].fault.abort.grpcStatus", "InvalidStatus"},
		{"percentage", "hosts: [a]\nhttp:\n- fault: {delay: {fixedDelay: 1s, percentage: {value: 150}}}" + route,
			"spec.http[0].fault.delay.percentage", "InvalidPercentage"},
		{"no action", "hosts: [a]\nhttp:\n- name: x", "spec.http[0]", "InvalidAction"},
		{"wildcard destination", "hosts: [a]\ntcp:\n- route: [{destination: {host: \"*.b\"}}]", "spec.tcp[0].route[0].destination.host", "InvalidHost"},
		{"tls without sni", "hosts: [a]\ntls:\n- match: [{port: 443}]\n  route: [{destination: {host: a}}]", "spec.tls[0].match[0].sniHosts", "MissingSNIHosts"},
		{"upper-case header", "hosts: [a]\nhttp:\n- match: [{withoutHeaders: {X-Debug: {}}}]" + route, "spec.http[0].match[0].withoutHeaders[X-Debug]", "InvalidHeaderName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := registry.NewStore(nil)
			good := vsFromYAML(t, "vs", "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]")
			if ps := s.Upsert("kube", good); len(ps) != 0 {
				t.Fatal(ps)
			}
			ps := s.Upsert("kube", vsFromYAML(t, "vs", tc.spec))
			if !hasProblem(ps, tc.field, tc.reason) || ps[0].Object != "VirtualService default/vs" {
				t.Errorf("problems = %v, want %s at %s", ps, tc.reason, tc.field)
			}
			if got := s.View().VirtualServices(); len(got) != 1 || len(got[0].HTTP) != 1 || got[0].HTTP[0].Route[0].Host != "a.default.svc.cluster.local" {
				t.Errorf("the last good version is not in force: %+v", got)
			}
		})
	}
}

// TestVirtualServiceAgainstModel: a destination to an unknown host, port
// or subset, and a second VirtualService for a host, are problems found
// against the rest of the model; they go away when the model catches up.
func TestVirtualServiceAgainstModel(t *testing.T) {
	s := registry.NewStore(nil)
	s.Upsert("kube", makeService("inventory", "10.96.0.20", svcPort("http", 8080)))
	older := vsFromYAML(t, "older", "hosts: [inventory]\nhttp:\n- route: [{destination: {host: inventory}}]")
	older.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	newer := &networkingv1alpha3.VirtualService{ObjectMeta: meta("newer")}
	newer.CreationTimestamp = metav1.NewTime(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	if err := yaml.Unmarshal([]byte(`
hosts: [inventory.default.svc.cluster.local]
http:
- route:
  - {destination: {host: inventory, subset: v2}, weight: 50}
  - {destination: {host: ghost}, weight: 25}
  - {destination: {host: inventory, port: {number: 9}}, weight: 25}
`), &newer.Spec); err != nil {
		t.Fatal(err)
	}
	s.Upsert("kube", newer)
	s.Upsert("kube", older)
	want := map[string]string{
		"spec.hosts[0]":                     registry.ReasonVirtualServiceConflict,
		"spec.http[0].route[0].destination": registry.ReasonUnknownSubset,
		"spec.http[0].route[1].destination": registry.ReasonUnknownHost,
		"spec.http[0].route[2].destination": registry.ReasonUnknownPort,
	}
	got := map[string]string{}
	for _, p := range s.Problems() {
		if p.Object != "VirtualService default/newer" || p.Source != "default/newer" {
			t.Errorf("problem %v names the wrong object or source", p)
		}
		got[p.Field] = p.Reason
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %v, want %v", s.Problems(), want)
	}
	if vss := s.View().VirtualServices(); len(vss) != 2 || vss[0].Name != "older" {
		t.Errorf("order = %v, want the older first", vss)
	}
	if vs := registry.VirtualServiceFor(s.View().VirtualServices(), "default", "inventory.default.svc.cluster.local"); vs == nil || vs.Name != "older" {
		t.Errorf("VirtualServiceFor = %v, want older", vs)
	}
	s.Upsert("kube", makeService("ghost", "10.96.0.21", svcPort("http", 8080)))
	for _, p := range s.Problems() {
		if p.Reason == registry.ReasonUnknownHost {
			t.Errorf("problem %v stays after the host came", p)
		}
	}
	s.Delete("kube", registry.KindVirtualService, "default", "older")
	for _, p := range s.Problems() {
		if p.Reason == registry.ReasonVirtualServiceConflict || strings.Contains(p.Message, "older") {
			t.Errorf("problem %v stays after the winner went", p)
		}
	}
}

func TestVirtualServiceFor(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vss := []*registry.VirtualService{
		{Namespace: "a", Name: "wild", Hosts: []string{"*.example.com"}, Created: old},
		{Namespace: "a", Name: "gateway-only", Hosts: []string{"api.example.com"}, Gateways: []string{"istio-system/ingress"}, Created: old},
		{Namespace: "a", Name: "private", Hosts: []string{"api.example.com"}, ExportTo: []string{"a"}, Created: old},
		{Namespace: "b", Name: "public", Hosts: []string{"api.example.com"}},
	}
	for _, tc := range []struct{ ns, host, want string }{
		{"a", "api.example.com", "private"},   // exact beats wildcard; older beats newer
		{"c", "api.example.com", "public"},    // private is not exported to c; gateway-only is not for sidecars
		{"c", "www.example.com", "wild"},      // only the wildcard names it
		{"c", "api.example.org", ""},          // nothing names it
		{"a", "deep.api.example.com", "wild"}, // a wildcard covers any depth
	} {
		got := ""
		if vs := registry.VirtualServiceFor(vss, tc.ns, tc.host); vs != nil {
			got = vs.Name
		}
		if got != tc.want {
			t.Errorf("VirtualServiceFor(%s, %s) = %q, want %q", tc.ns, tc.host, got, tc.want)
		}
	}
}

// FuzzVirtualService: any VirtualService spec converts without a panic,
// its problems name the object, and a refused one leaves no VirtualService.
func FuzzVirtualService(f *testing.F) {
	for _, s := range []string{
		"hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]",
		"hosts: [a, \"*.b\"]\ngateways: [mesh, gw]\nexportTo: [\".\"]\nhttp:\n- name: n\n  match: [{name: m, uri: {regex: \"/x.*\"}, headers: {h: {}}, withoutHeaders: {w: {prefix: p}}, queryParams: {q: {exact: \"1\"}}, port: 80, sourceNamespace: s}]\n  route: [{destination: {host: a, subset: s, port: {number: 80}}, weight: 60, headers: {request: {set: {k: v}}}}, {destination: {host: b}, weight: 40}]\n  timeout: 1s\n  retries: {attempts: 2, perTryTimeout: 1s, retryOn: \"5xx,503,unavailable\"}\n  fault: {delay: {fixedDelay: 1s, percent: 5}, abort: {httpStatus: 503, percentage: {value: 1.5}}}\n  rewrite: {uri: /y, authority: z}\n  mirror: {host: c}\n  mirrorPercentage: {value: 10}",
		"hosts: [a]\ntcp: [{match: [{port: 5432}], route: [{destination: {host: a}, weight: 90}, {destination: {host: b}, weight: 10}]}]\ntls: [{match: [{sniHosts: [a.example], port: 443}], route: [{destination: {host: a.example}}]}]",
		"hosts: [a]\nhttp:\n- redirect: {uri: /n, redirectCode: 302}\n- directResponse: {status: 503, body: {string: down}}",
		"hosts: [\"\"]\nhttp:\n- match: [{uri: {regex: \"(\"}}]\n  route: [{destination: {host: \"*\"}, weight: -1}]\n  timeout: -1s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		vs := &networkingv1.VirtualService{ObjectMeta: meta("fuzz")}
		if err := yaml.Unmarshal([]byte(spec), &vs.Spec); err != nil {
			return
		}
		s := registry.NewStore(nil)
		ps := s.Upsert("kube", vs)
		for _, p := range ps {
			if p.Object != "VirtualService default/fuzz" || p.Source != "default/fuzz" {
				t.Errorf("problem %v does not name the object", p)
			}
		}
		refused := slices.ContainsFunc(ps, func(p registry.Problem) bool { return p.Reason != registry.ReasonUnsupportedField })
		if n := len(s.View().VirtualServices()); refused != (n == 0) {
			t.Errorf("%d problems and %d VirtualServices stored: a refused object must leave none, an accepted one must be stored", len(ps), n)
		}
		for _, p := range s.Problems() {
			if p.Object != "VirtualService default/fuzz" {
				t.Errorf("problem %v does not name the object", p)
			}
		}
	})
}

// TestVirtualServiceUnsupportedMatch: a match the control plane cannot
// check (sourceLabels) is a warning and is left out; the VirtualService
// stays in force with its other matches.
func TestVirtualServiceUnsupportedMatch(t *testing.T) {
	s := registry.NewStore(nil)
	ps := s.Upsert("kube", vsFromYAML(t, "vs", "hosts: [a]\nhttp:\n- match: [{sourceLabels: {app: x}}, {uri: {prefix: /b}}]\n  route: [{destination: {host: a}}]"))
	if !hasProblem(ps, "spec.http[0].match[0].sourceLabels", registry.ReasonUnsupportedField) {
		t.Errorf("problems = %v, want UnsupportedField for sourceLabels", ps)
	}
	vss := s.View().VirtualServices()
	if len(vss) != 1 || !vss[0].HTTP[0].Matches[0].Unsupported || vss[0].HTTP[0].Matches[1].Unsupported {
		t.Fatalf("virtual services = %+v, want the VirtualService with its first match marked unsupported", vss)
	}
}
