package loadtest

import "text/template"

// policyYAML is mesh-wide STRICT mTLS with Istio mTLS to every *.local host.
const policyYAML = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: default, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
`

// serviceTmpl is a Kubernetes Service, its EndpointSlice and its pods.
var serviceTmpl = template.Must(template.New("svc").Parse(`apiVersion: v1
kind: Service
metadata: {name: {{.Name}}, namespace: default}
spec:
  clusterIP: {{.VIP}}
  selector: {app: {{.Name}}}
  ports:
  - {name: http, port: {{.Port}}, targetPort: {{.Port}}, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {{.Name}}-abcde
  namespace: default
  labels: {kubernetes.io/service-name: {{.Name}}}
addressType: IPv4
ports:
- {name: http, port: {{.Port}}, protocol: TCP}
endpoints:
{{- range $j, $ip := .IPs}}
- addresses: ["{{$ip}}"]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: default, name: {{$.Name}}-pod-{{$j}}}
{{- end}}
{{- range $j, $ip := .IPs}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {{$.Name}}-pod-{{$j}}
  namespace: default
  labels: {app: {{$.Name}}{{if $.Group}}, group: {{$.Group}}{{end}}}
spec:
  serviceAccountName: {{$.Name}}
  containers:
  - name: app
    image: example.com/app:1.0
    ports: [{name: http, containerPort: {{$.Port}}}]
status:
  phase: Running
  podIP: {{$ip}}
  podIPs: [{ip: {{$ip}}}]
  conditions: [{type: Ready, status: "True"}]
{{- end}}
`))

// entryTmpl is a ServiceEntry with VM endpoints.
var entryTmpl = template.Must(template.New("se").Parse(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: {{.Name}}, namespace: default}
spec:
  hosts: [{{.Name}}.default.svc.cluster.local]
  addresses: [{{.VIP}}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: {{.Port}}, name: tcp, protocol: TCP}
  endpoints:
{{- range .IPs}}
  - address: {{.}}
    labels: {app: {{$.Name}}{{if $.Group}}, group: {{$.Group}}{{end}}}
    serviceAccount: {{$.Name}}
{{- end}}
`))

// httpEntryTmpl is an HTTP ServiceEntry without addresses, with VM endpoints.
var httpEntryTmpl = template.Must(template.New("http-se").Parse(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: {{.Name}}, namespace: default}
spec:
  hosts: [{{.Name}}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: {{.Port}}, name: http, protocol: HTTP}
  endpoints:
{{- range .IPs}}
  - address: {{.}}
    labels: {app: {{$.Name}}{{if $.Group}}, group: {{$.Group}}{{end}}}
    serviceAccount: {{$.Name}}
{{- end}}
`))
