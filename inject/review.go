package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxRequestBytes bounds an AdmissionReview body (the API server sends
// objects of up to about 3 MiB).
const MaxRequestBytes = 6 << 20

var podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// Review answers one AdmissionReview (admission.k8s.io/v1, JSON): the
// response carries the request's UID, and for a Pod the patch, the
// warnings, or the refusal. A body that is not an AdmissionReview with a
// request is an error.
func Review(cfg Config, body []byte, logger *slog.Logger) ([]byte, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	review.Response = respond(cfg, review.Request, logger)
	review.Request = nil
	if review.APIVersion == "" {
		review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	out, err := json.Marshal(review)
	if err != nil {
		return nil, fmt.Errorf("encode AdmissionReview: %w", err)
	}
	return out, nil
}

// respond decides one request. Anything but a Pod is allowed unchanged
// (the webhook is registered for pods only).
func respond(cfg Config, req *admissionv1.AdmissionRequest, logger *slog.Logger) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind != podKind {
		resp.Warnings = []string{fmt.Sprintf("sidecar injector: %s is not a v1 Pod; left unchanged", req.Kind.String())}
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(resp, http.StatusBadRequest, fmt.Sprintf("sidecar injection: decode pod %s/%s: %v", req.Namespace, req.Name, err))
	}
	if pod.Name == "" {
		pod.Name = req.Name
	}
	res, err := Mutate(cfg, &pod, req.Namespace)
	resp.Warnings = res.Warnings
	log := logger.With("object", req.Namespace+"/"+podName(&pod))
	if refusal := (*Refusal)(nil); errors.As(err, &refusal) {
		log.Warn("sidecar injection refused", "err", err)
		return deny(resp, http.StatusUnprocessableEntity, err.Error())
	}
	if err != nil {
		log.Error("sidecar injection failed", "err", err)
		return deny(resp, http.StatusInternalServerError, err.Error())
	}
	if res.Skipped != "" {
		log.Debug("sidecar not injected", "reason", res.Skipped)
		return resp
	}
	if err := patchApplies(req.Object.Raw, res.Patch); err != nil {
		log.Warn("sidecar injection refused", "err", err)
		return deny(resp, http.StatusBadRequest, fmt.Sprintf("sidecar injection into pod %s/%s: %v", req.Namespace, podName(&pod), err))
	}
	log.Info("sidecar injected", "dryRun", req.DryRun != nil && *req.DryRun)
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = res.Patch, &pt
	return resp
}

// patchApplies checks that patch applies to the object as sent: the patch
// is computed from the decoded pod, and an object missing parts every
// real pod has (metadata, spec.containers) would get a patch the API server
// cannot apply.
func patchApplies(raw, patch []byte) error {
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return fmt.Errorf("decode own patch: %w", err)
	}
	if _, err := p.Apply(raw); err != nil {
		return fmt.Errorf("the pod as sent lacks a field the sidecar is added to (%w)", err)
	}
	return nil
}

func deny(resp *admissionv1.AdmissionResponse, code int32, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: msg}
	return resp
}

// Handler serves Review at any path (register it at /inject): POST an
// AdmissionReview, get one back.
func Handler(cfg Config, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		if err != nil {
			http.Error(w, "read request: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		out, err := Review(cfg, body, logger)
		if err != nil {
			logger.Warn("bad admission request", "err", err, "remote", r.RemoteAddr)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}
