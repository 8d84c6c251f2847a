// Package inject is the sidecar injector: it turns an admission request for
// a Pod into the JSON patch that adds Istio's sidecar (the istio-proxy
// container running `pilot-agent proxy sidecar`, the istio-init capture
// container, the istio-token and root-certificate volumes, and the labels
// and annotations Istio sets), so that Istio's own proxyv2 image runs
// unchanged against this control plane.
//
// Which pods reach the webhook is decided by the MutatingWebhookConfiguration's
// selectors (deploy/base/mutatingwebhook.yaml, the same as Istio's); Mutate
// then leaves alone pods that opted out, already carry a sidecar, or use the
// host network, and refuses pods the template cannot be added to, naming the
// field. Mutate is pure; Handler and Server serve it over HTTPS.
package inject
