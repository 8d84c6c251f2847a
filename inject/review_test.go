package inject

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// reviewBody is an AdmissionReview for creating pod (JSON) in ns.
func reviewBody(t testing.TB, ns string, pod []byte) []byte {
	t.Helper()
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("7f0a8a38-0001"), Kind: podKind, Namespace: ns, Operation: admissionv1.Create,
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Object:   runtime.RawExtension{Raw: pod},
		},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, h http.Handler, body []byte) (int, admissionv1.AdmissionReview, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
	b, _ := io.ReadAll(rec.Body)
	var out admissionv1.AdmissionReview
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("response is not an AdmissionReview: %v\n%s", err, b)
		}
	}
	return rec.Code, out, string(b)
}

func TestHandler(t *testing.T) {
	h := Handler(testConfig(), slog.New(slog.DiscardHandler))
	pod, _ := json.Marshal(basePod(nil))
	refused, _ := json.Marshal(basePod(func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "istio-data"}} }))
	optedOut, _ := json.Marshal(basePod(func(p *corev1.Pod) { p.Labels[InjectKey] = "false" }))
	tests := []struct {
		name      string
		body      []byte
		code      int
		allowed   bool
		patched   bool
		inMessage string
	}{
		{"injects", reviewBody(t, "app", pod), 200, true, true, ""},
		{"opted out", reviewBody(t, "app", optedOut), 200, true, false, ""},
		{"refused", reviewBody(t, "app", refused), 200, false, false, "spec.volumes[0].name"},
		{"object not a pod", reviewBody(t, "app", []byte(`{"spec":{"containers":"web"}}`)), 200, false, false, "decode pod"},
		{"not JSON", []byte("{"), 400, false, false, "decode AdmissionReview"},
		{"no request", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, false, false, "no request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, raw := post(t, h, tt.body)
			if code != tt.code {
				t.Fatalf("HTTP %d, want %d: %s", code, tt.code, raw)
			}
			if code != 200 {
				if !strings.Contains(raw, tt.inMessage) {
					t.Errorf("body %q does not contain %q", raw, tt.inMessage)
				}
				return
			}
			r := out.Response
			if r == nil || r.UID != "7f0a8a38-0001" || r.Allowed != tt.allowed || (r.Patch != nil) != tt.patched {
				t.Fatalf("response %+v, want allowed %v patched %v and the request's UID", r, tt.allowed, tt.patched)
			}
			if tt.patched && (r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Errorf("patch type %v, want JSONPatch", r.PatchType)
			}
			if !tt.allowed && (r.Result == nil || !strings.Contains(r.Result.Message, tt.inMessage)) {
				t.Errorf("refusal %+v does not contain %q", r.Result, tt.inMessage)
			}
		})
	}
}
