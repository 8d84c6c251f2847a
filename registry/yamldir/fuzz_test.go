package yamldir

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/librarymesh/controlplane/registry"
)

// fuzzSeeds are documents of each kind the source reads and bad ones.
var fuzzSeeds = []string{
	"",
	"---\n---\n# only comments\n...\n",
	"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 0}]}\n",
	"kind: [broken\n",
	"apiVersion: v1\n",
	"apiVersion: example.com/v1\nkind: Unknown\nmetadata: {name: u}\n",
	"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: t}\nspec:\n  hosts: [t.example]\n  resolutoin: DNS\n  ports: [{number: 80, name: http, protocl: HTTP}]\n",
	"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e, namespace: other}\nspec:\n  hosts: [postgres-1-vm.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 5432, name: tcp}]\n  endpoints: [{address: 203.0.113.66, serviceAccount: evil}]\n",
	"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: dup, namespace: a, creationTimestamp: \"2020-01-01T00:00:00Z\"}\nspec:\n  hosts: [db.example.com, DB.example.com, \"*.default.svc.cluster.local\"]\n  exportTo: [\".\", \"~\", \"Bad_NS\"]\n  resolution: DNS\n  ports: [{number: 1, name: a, targetPort: 70000}, {number: 1, name: a}]\n",
	"apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {name: sel}\nspec:\n  hosts: [sel.example.com]\n  workloadSelector: {labels: {app: x}}\n  resolution: STATIC\n  ports: [{number: 80, name: http}]\n  endpoints: [{address: 1.2.3.4, ports: {nope: 0}}]\n",
	"apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: we}\nspec: {address: 10.0.0.1, labels: {app: x}, serviceAccount: vm}\n",
	"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\nspec: {host: \"*.local\", exportTo: [\".\"], trafficPolicy: {tls: {mode: 7}}}\n",
	// DestinationRules: every traffic policy field set well, and each set badly.
	"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: inv}\nspec:\n  host: inventory\n  trafficPolicy:\n    loadBalancer: {consistentHash: {httpCookie: {name: u, path: /, ttl: 10s}, ringHash: {minimumRingSize: 1024}}, localityLbSetting: {enabled: true, distribute: [{from: a/b/*, to: {a/c/*: 100}}]}}\n    connectionPool: {tcp: {maxConnections: 1, connectTimeout: 1s, tcpKeepalive: {probes: 1, time: 1s, interval: 1s}}, http: {http1MaxPendingRequests: 1, http2MaxRequests: 1, maxRequestsPerConnection: 1, maxRetries: 1, idleTimeout: 1s}}\n    outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: 1, consecutiveLocalOriginFailures: 1, splitExternalLocalOriginErrors: true, failurePercentageThreshold: 50, interval: 1s, baseEjectionTime: 1s, maxEjectionPercent: 100, minHealthPercent: 0}\n    tls: {mode: MUTUAL, credentialName: c, sni: s, subjectAltNames: [a], insecureSkipVerify: false}\n    portLevelSettings: [{port: {number: 8080}, loadBalancer: {simple: LEAST_CONN}, tls: {mode: SIMPLE, caCertificates: /ca}}]\n  subsets:\n  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}}}\n  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: q}}, tls: {mode: ISTIO_MUTUAL}}}\n",
	"apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: bad}\nspec:\n  host: a.b\n  trafficPolicy:\n    loadBalancer: {simple: 42, consistentHash: {maglev: {tableSize: 4}}, localityLbSetting: {distribute: [{from: x, to: {y: 0}}], failover: [{from: r, to: r}]}}\n    connectionPool: {tcp: {maxConnections: -1, connectTimeout: 0s, tcpKeepalive: {time: 0.5s}}, http: {http2MaxRequests: -2, idleTimeout: -1s}}\n    outlierDetection: {consecutiveErrors: -1, consecutiveLocalOriginFailures: 2, failurePercentageThreshold: 900, interval: 1.0000001s, maxEjectionPercent: -1, minHealthPercent: 101}\n    tls: {mode: ISTIO_MUTUAL, clientCertificate: /c}\n    portLevelSettings: [{port: {number: 0}}, {port: {number: 1}}, {port: {number: 1}}]\n  subsets: [{name: \"a|b\"}, {name: v1, trafficPolicy: {tls: {mode: MUTUAL}}}]\n",
	// localityLbSetting: failover with failoverPriority, a bad distribute, and a pod's locality label.
	"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: loc}\nspec:\n  host: inventory\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n    loadBalancer: {localityLbSetting: {enabled: true, failover: [{from: r1, to: r2}, {from: r2, to: r2/z1}], failoverPriority: [version, 'topology.istio.io/network=n1', 'bad label']}}\n    portLevelSettings: [{port: {number: 8080}, loadBalancer: {localityLbSetting: {distribute: [{from: 'r1/*/s', to: {'r1//': 60, '*': 41}}, {from: 'r1/*/s', to: {r2: 100}}]}}}]\n",
	"apiVersion: v1\nkind: Pod\nmetadata: {name: loc, labels: {istio-locality: r1.z1.s1, topology.kubernetes.io/region: r2}}\nspec: {containers: [{name: c}]}\nstatus: {phase: Running, podIP: 10.8.0.99}\n",
	"apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: pa}\nspec: {mtls: {mode: STRICT}, portLevelMtls: {\"0\": {mode: DISABLE}}}\n",
	"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: pg}\nspec:\n  selector: {matchLabels: {app: postgres-1-vm}}\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/inventory], notNamespaces: [\"x*\"], ipBlocks: [10.0.0.0/8]}}]\n    to: [{operation: {ports: [\"5432\"], methods: [GET], paths: [\"/a*\", \"*b\"], hosts: [\"*.example\"]}}]\n    when: [{key: \"request.headers[x-id]\", values: [\"*\"]}, {key: destination.port, notValues: [\"9\"]}]\n",
	"apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: bad}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {requestPrincipals: [\"*\"], ipBlocks: [\"10.0.0.300\"], principals: [\"a*b*\"]}}, {}]\n    to: [{operation: {ports: [\"0\", \"x\"], paths: [\"/{*}\"]}}]\n    when: [{key: request.auth.claims[iss], values: [x]}, {key: nope}, {key: \"request.headers[]\", values: [\"\"]}]\n  - {}\n",
	"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: custom}\nspec: {action: CUSTOM, provider: {name: ext-authz}, rules: [{to: [{operation: {paths: [/admin]}}]}]}\n",
	"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: istio-system}\nspec: {}\n",
	"apiVersion: v1\nkind: Service\nmetadata: {name: x, annotations: {networking.istio.io/exportTo: \" ., other ,\"}}\nspec: {type: ExternalName, externalName: a.b}\n",
	"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: es, labels: {kubernetes.io/service-name: inventory}}\naddressType: IPv4\nendpoints: [{addresses: [\"::1\", \"x\"], targetRef: {kind: Pod, name: p}}]\n",
	"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.8.0.9, podIPs: [{ip: \"bad\"}]}\n",
	"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {unknownField: 1}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
	// VirtualServices: a good one over examples/library, and one with a bad value in every field it checks.
	"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [inventory]\n  http:\n  - name: canary\n    match: [{headers: {x-canary: {exact: \"yes\"}}, uri: {prefix: /}}]\n    route: [{destination: {host: inventory, subset: v2}}]\n    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}\n  - route: [{destination: {host: inventory}, weight: 80}, {destination: {host: postgres-1-vm, port: {number: 5432}}, weight: 20}]\n    retries: {attempts: 2, retryOn: \"5xx,503\"}\n  tcp: [{match: [{port: 5432}], route: [{destination: {host: postgres-1-vm}}]}]\n",
	"apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: bad}\nspec:\n  hosts: [\"\", \"a*b\"]\n  gateways: [\"\"]\n  exportTo: [Bad]\n  http:\n  - match: [{uri: {regex: \"(\"}, port: 70000, headers: {X: {}}}]\n    route: [{destination: {host: \"*\"}, weight: 101}, {destination: {}, weight: -1}]\n    timeout: -1s\n    retries: {attempts: -1, perTryTimeout: -1s, retryOn: never}\n    fault: {delay: {exponentialDelay: 1s, percentage: {value: -1}}, abort: {http2Error: x}}\n    mirrorPercentage: {value: 200}\n    mirror: {host: \"\"}\n  tls: [{match: [{port: 1}], route: []}]\n",
	// Automatic mTLS: tlsMode labels (a bad value), the injector's annotation,
	// and two instances on one address with different ports.
	// WorkloadGroups: a good one with every probe field, and one bad in each field checked.
	"apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: wg}\nspec:\n  metadata: {labels: {app: x}, annotations: {a: b}}\n  template: {serviceAccount: vm, ports: {http: 8080}, network: n1, locality: r/z, labels: {v: \"1\"}}\n  probe: {initialDelaySeconds: 1, timeoutSeconds: 2, periodSeconds: 3, successThreshold: 1, failureThreshold: 2, httpGet: {path: /h, port: 8080, host: 127.0.0.1, scheme: HTTPS, httpHeaders: [{name: X-A, value: b}]}}\n",
	"apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadGroup\nmetadata: {name: bad}\nspec:\n  metadata: {labels: {\"bad key\": x}}\n  template: {address: 10.0.0.9, serviceAccount: \"No\", ports: {p: 0}}\n  probe: {periodSeconds: -1, failureThreshold: -2, tcpSocket: {port: 70000}, exec: {command: []}}\n",
	"apiVersion: networking.istio.io/v1beta1\nkind: WorkloadGroup\nmetadata: {name: ex}\nspec: {template: {}, probe: {exec: {command: [\"\"]}}}\n",
	"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: tm}\nspec: {address: 10.0.0.2, labels: {security.istio.io/tlsMode: ISTIO}}\n",
	"apiVersion: v1\nkind: Pod\nmetadata: {name: inj, labels: {security.istio.io/tlsMode: \"\"}, annotations: {sidecar.istio.io/status: \"{}\"}}\nstatus: {podIP: 10.8.0.10}\n",
	"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: two}\nspec:\n  hosts: [two.example]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 80, name: http}, {number: 81, name: admin}]\n  endpoints:\n  - {address: 10.0.0.3, ports: {http: 8080}, labels: {security.istio.io/tlsMode: istio}}\n  - {address: 10.0.0.3, ports: {http: 8081, admin: 81}, labels: {security.istio.io/tlsMode: disabled}}\n",
}

// libraryUpdates decodes examples/library once, to give each fuzz input a
// real mesh to merge with.
func libraryUpdates(tb testing.TB, d *decoder) []registry.OriginUpdate {
	tb.Helper()
	files, err := filepath.Glob("../../examples/library/*.yaml")
	if err != nil || len(files) == 0 {
		tb.Fatalf("examples/library: %v", err)
	}
	var out []registry.OriginUpdate
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, d.decodeFile(f, data))
	}
	return out
}

// FuzzFile feeds a YAML file through the path the folder source uses
// (split, decode, locate, convert, merge with examples/library) and checks
// that it never panics, keeps a bounded number of problems, all about its
// own file, and that applying the same file again changes nothing.
func FuzzFile(f *testing.F) {
	d, err := newDecoder(DefaultMaxFileBytes)
	if err != nil {
		f.Fatal(err)
	}
	library := libraryUpdates(f, d)
	for _, u := range library {
		data, err := os.ReadFile(u.Origin)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		for _, doc := range splitDocuments(data) {
			f.Add(doc.data)
		}
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "dir/fuzz.yaml"
		store := registry.NewStore(nil)
		for _, u := range library {
			store.Apply(u)
		}
		u := d.decodeFile(path, data)
		ps := store.Apply(u)
		if len(ps) > registry.MaxOriginProblems+1 {
			t.Fatalf("%d problems for one file, want at most %d and a summary", len(ps), registry.MaxOriginProblems)
		}
		for _, p := range ps {
			if !strings.HasPrefix(p.Source, path) {
				t.Errorf("problem of the file has source %q: %s", p.Source, p.Error())
			}
		}
		rev, all := store.View().Revision(), store.Problems()
		store.Apply(d.decodeFile(path, data))
		if got := store.View().Revision(); got != rev {
			t.Errorf("applying the same file again changed the model (revision %d -> %d)", rev, got)
		}
		if got := store.Problems(); !reflect.DeepEqual(got, all) {
			t.Errorf("applying the same file again changed the problems:\n%v\n%v", all, got)
		}
		checkView(t, store.View())
	})
}

// checkView checks what a view must hold whatever the input: every
// endpoint belongs to a listed service, and a Kubernetes Service host of
// namespace default takes no object or endpoint from other namespaces.
func checkView(t *testing.T, v registry.View) {
	for _, svc := range v.Services() {
		if v.Service(svc.Hostname) != svc {
			t.Errorf("service %s is listed but not found by host", svc.Hostname)
		}
		for _, ep := range v.Endpoints(svc.Hostname) {
			if ep.Hostname != svc.Hostname {
				t.Errorf("endpoint %s of %s names host %s", ep.Address, svc.Hostname, ep.Hostname)
			}
		}
		if !strings.HasSuffix(svc.Hostname, ".default.svc.cluster.local") {
			continue
		}
		for _, src := range svc.Sources {
			if !strings.Contains(src, " default/") {
				t.Errorf("%s of namespace default was built from %s", svc.Hostname, src)
			}
		}
		for _, ep := range v.Endpoints(svc.Hostname) {
			if ep.Namespace != "default" {
				t.Errorf("%s of namespace default has endpoint %s of namespace %s", svc.Hostname, ep.Address, ep.Namespace)
			}
		}
	}
}

// FuzzFieldLine: finding a field's line in any document by any field path
// never panics and names a line of the document, the one after its end (a
// document of only a null node), or 0.
func FuzzFieldLine(f *testing.F) {
	f.Add([]byte(fuzzSeeds[6]), "spec.hosts[0]")
	f.Add([]byte(fuzzSeeds[8]), "spec.endpoints[0].ports[nope]")
	f.Add([]byte(fuzzSeeds[7]), "spec.ports[1].targetPort")
	f.Add([]byte("a:\n  - b: [1, {c: d}]\n"), "a[0].b[1].c")
	f.Add([]byte("kind: [broken\n"), "kind")
	f.Add([]byte("x: y\n"), "[[]]..x[")
	f.Fuzz(func(t *testing.T, data []byte, field string) {
		for _, doc := range splitDocuments(data) {
			line := fieldLine(doc.data, field)
			if lines := yamlLines(doc.data); line < 0 || line > lines+1 {
				t.Errorf("line %d of a document of %d lines", line, lines)
			}
			_ = findKey(doc.data, field)
		}
	})
}

// yamlLines counts lines as YAML does: "\r\n", "\r" and "\n" each end one.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return strings.Count(s, "\n") + strings.Count(s, "\r") + 1
}
