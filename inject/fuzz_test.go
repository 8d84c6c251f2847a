package inject

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/yaml"
)

// FuzzReview feeds AdmissionReview bodies to Review: it never panics, a
// body it accepts gets an AdmissionReview back with the request's UID,
// and every patch it returns applies to the pod it was made for and
// yields a pod that is injected (a second review leaves it alone).
func FuzzReview(f *testing.F) {
	pods, err := filepath.Glob("testdata/*-pod.yaml")
	if err != nil || len(pods) == 0 {
		f.Fatalf("no seed pods: %v", err)
	}
	for _, p := range pods {
		y, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		raw, err := yaml.YAMLToJSON(y)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(reviewBody(f, "default", raw))
	}
	f.Add(reviewBody(f, "app", []byte(`{"metadata":{"annotations":{"sidecar.istio.io/interceptionMode":"TPROXY","prometheus.io/port":"0"}},"spec":{"containers":[{"name":"istio-proxy","image":"x"}]}}`)))
	f.Add(reviewBody(f, "app", []byte(`{"spec":{"hostNetwork":true}}`)))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":null}}`))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"}}}`))
	logger := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := Review(testConfig(), body, logger)
		if err != nil {
			return
		}
		var in, resp admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("Review accepted a body that does not decode: %v", err)
		}
		if err := json.Unmarshal(out, &resp); err != nil || resp.Response == nil {
			t.Fatalf("response is not an AdmissionReview: %v\n%s", err, out)
		}
		if resp.Response.UID != in.Request.UID {
			t.Fatalf("response UID %q, want %q", resp.Response.UID, in.Request.UID)
		}
		if resp.Response.Patch == nil {
			return
		}
		injected := applyPatch(t, in.Request.Object.Raw, resp.Response.Patch)
		again, err := Mutate(testConfig(), injected, in.Request.Namespace)
		if err != nil || again.Patch != nil {
			t.Fatalf("the injected pod is injected again: %+v, %v", again, err)
		}
	})
}
