package yamldir

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// sameAsYAML checks that decode gives what decodeYAML (every document
// decoded from its YAML, as before decodeClean) gives.
func sameAsYAML(t *testing.T, d *decoder, data []byte) (runtime.Object, *decodeError, *decodeError) {
	t.Helper()
	obj, warn, derr := d.decode(data)
	wantObj, wantWarn, wantErr := d.decodeYAML(data)
	if !reflect.DeepEqual(obj, wantObj) {
		t.Errorf("object differs from decoding the YAML:\ngot  %#v\nwant %#v", obj, wantObj)
	}
	if !reflect.DeepEqual(warn, wantWarn) || !reflect.DeepEqual(derr, wantErr) {
		t.Errorf("warning, error = %+v, %+v; decoding the YAML: %+v, %+v", warn, derr, wantWarn, wantErr)
	}
	return obj, warn, derr
}

func TestDecodeClean(t *testing.T) {
	d, err := newDecoder(DefaultMaxFileBytes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		doc  string
		// clean: decodeClean decodes it; else the problem readDocument
		// reports, "" Reason for none.
		clean                 bool
		reason, object, field string
		line                  int // of the problem, in the file (the document starts on line 1)
	}{
		{name: "Service", clean: true, doc: "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{name: http, port: 80, targetPort: 8080}]\n"},
		{name: "EndpointSlice", clean: true, doc: "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s-1, labels: {kubernetes.io/service-name: s}}\naddressType: IPv4\nports: [{name: http, port: 80}]\nendpoints: [{addresses: [10.8.0.1], conditions: {ready: true}}]\n"},
		{name: "Pod with a creation time (dropped)", clean: true, doc: "apiVersion: v1\nkind: Pod\nmetadata: {name: p, creationTimestamp: \"2020-01-01T00:00:00Z\", labels: {app: s}}\nspec: {serviceAccountName: s, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.8.0.1}\n"},
		{name: "ServiceEntry v1", clean: true, doc: "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n  hosts: [e.example]\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints: [{address: 10.0.0.1, labels: {a: b}}]\n"},
		{name: "ServiceEntry v1beta1, numbers in strings", clean: true, doc: "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [e.example], resolution: DNS, ports: [{number: 80, name: http, targetPort: 8080}]}\n"},
		{name: "DestinationRule v1alpha3", clean: true, doc: "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: dr}\nspec: {host: \"*.local\", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, connectionPool: {tcp: {connectTimeout: 1s}}}}\n"},
		{name: "PeerAuthentication", clean: true, doc: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"},
		{name: "AuthorizationPolicy", clean: true, doc: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: pg}\nspec:\n  selector: {matchLabels: {app: pg}}\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/inventory]}}]\n    to: [{operation: {ports: [\"5432\"]}}]\n"},
		{name: "VirtualService", clean: true, doc: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [inventory]\n  http:\n  - match: [{headers: {x-canary: {exact: \"yes\"}}}]\n    route: [{destination: {host: inventory, subset: v2}, weight: 100}]\n    timeout: 2s\n"},
		{name: "WorkloadGroup", clean: true, doc: "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: wg}\nspec:\n  metadata: {labels: {app: x}}\n  template: {serviceAccount: vm, ports: {http: 8080}}\n  probe: {periodSeconds: 3, httpGet: {path: /h, port: 8080}}\n"},
		{name: "Sidecar", clean: true, doc: "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec: {egress: [{hosts: [\"./*\", \"istio-system/*\"]}]}\n"},

		{name: "invalid YAML", doc: "apiVersion: v1\nkind: [broken\n", reason: "InvalidYAML", object: "document 0", line: 2},
		{name: "no apiVersion", doc: "kind: Service\nmetadata: {name: s}\n", reason: "MissingAPIVersion", object: "document 0", field: "apiVersion", line: 1},
		{name: "no kind", doc: "apiVersion: v1\nmetadata: {name: s}\n", reason: "MissingKind", object: "document 0", field: "kind", line: 1},
		{name: "kind not read", doc: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: s}\n", reason: "UnknownKind", object: "document 0", field: "kind", line: 2},
		{name: "unknown field of a Kubernetes type", doc: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1, clusterIPX: 1}\n",
			reason: "UnknownField", object: "Service default/s", line: 1},
		{name: "key given twice", doc: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1}\nspec: {clusterIP: 10.96.0.2}\n",
			reason: "UnknownField", object: "Service default/s", line: 1},
		{name: "misspelt field of an Istio spec", doc: "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n  hosts: [e.example]\n  resolutoin: DNS\n",
			reason: "UnknownField", object: "ServiceEntry default/e", field: "spec.resolutoin", line: 6},
		{name: "wrong type in a Kubernetes type", doc: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: eighty\n",
			reason: "InvalidObject", object: "document 0", field: "spec.ports.port", line: 5},
		{name: "bad enum in an Istio spec", doc: "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n  hosts: [e.example]\n  resolution: SOMETIMES\n",
			reason: "InvalidObject", object: "document 0", field: "spec.resolution", line: 6},
		{name: "a list for an object", doc: "apiVersion: v1\nkind: Pod\nmetadata: [p]\n", reason: "InvalidObject", object: "document 0", field: "metadata", line: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.doc)
			if got := d.decodeClean(data) != nil; got != tt.clean {
				t.Errorf("decodeClean decoded it: %v, want %v", got, tt.clean)
			}
			sameAsYAML(t, d, data)
			const path = "dir/f.yaml"
			u := d.decodeFile(path, data)
			if tt.clean {
				if len(u.Problems) > 0 || len(u.Items) != 1 {
					t.Fatalf("decodeFile: %d items, problems %v; want 1 item and none", len(u.Items), u.Problems)
				}
				if u.Items[0].Source != path+":1" || u.Items[0].Context != "document 0" {
					t.Errorf("item read at %q (%q), want %s:1 (document 0)", u.Items[0].Source, u.Items[0].Context, path)
				}
				return
			}
			if len(u.Problems) != 1 {
				t.Fatalf("problems %v, want one", u.Problems)
			}
			p := u.Problems[0]
			want := fmt.Sprintf("%s:%d", path, tt.line)
			if p.Reason != tt.reason || p.Object != tt.object || p.Field != tt.field || p.Source != want {
				t.Errorf("problem %s at %s: reason %q, object %q, field %q; want %q, %q, %q at %s",
					p.Error(), p.Source, p.Reason, p.Object, p.Field, tt.reason, tt.object, tt.field, want)
			}
		})
	}
}

// FuzzDecodeClean: decoding a document gives what decoding it from YAML
// gives (the object, the warning and the error), and when decodeClean
// takes a document, decoding from YAML finds nothing wrong with it.
func FuzzDecodeClean(f *testing.F) {
	d, err := newDecoder(DefaultMaxFileBytes)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.1}\nspec: {clusterIP: 10.96.0.2}\n"))
	f.Add([]byte("apiVersion: 1\nkind: Service\nmetadata: {name: s}\n"))
	f.Add([]byte("APIVERSION: v1\nKIND: Service\nmetadata: {name: s}\n"))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: 1, b: true, c: null}}\nstatus: {podIP: 10.8.0.1}\n"))
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: e}\nspec: {hosts: [a], ports: [{number: \"80\", name: h}], resolution: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, doc := range splitDocuments(data) {
			clean := d.decodeClean(doc.data)
			_, warn, derr := sameAsYAML(t, d, doc.data)
			if clean != nil && (warn != nil || derr != nil) {
				t.Errorf("decodeClean took a document with a problem: %+v, %+v", warn, derr)
			}
		}
	})
}
