package yamldir

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/yaml"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	networkingv1beta1 "istio.io/client-go/pkg/apis/networking/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
)

// decoder turns YAML documents into the real API types. It is safe for
// concurrent use.
type decoder struct {
	serializer *json.Serializer // from YAML
	fromJSON   *json.Serializer // the same decoding, from the JSON of a document
	maxBytes   int64            // the largest file read
}

func newDecoder(maxBytes int64) (*decoder, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, discoveryv1.AddToScheme,
		networkingv1.AddToScheme, networkingv1beta1.AddToScheme, networkingv1alpha3.AddToScheme,
		securityv1.AddToScheme, securityv1beta1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	s := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	js := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Strict: true})
	return &decoder{serializer: s, fromJSON: js, maxBytes: maxBytes}, nil
}

// decodeError is a document that could not be decoded.
type decodeError struct {
	line    int    // relative to the document, 0 if unknown
	field   string // e.g. "kind"
	reason  string
	message string
}

var (
	yamlLine    = regexp.MustCompile(`line (\d+)`)
	structField = regexp.MustCompile(`Go struct field \w+\.([\w.]+) of type`)
	enumField   = regexp.MustCompile(`for enum [\w.]*\.(\w+)$`)
)

// errorField guesses the field a decode error is about: encoding/json names
// it; protobuf enum errors name the enum type, whose key is searched for.
func errorField(data []byte, msg string) string {
	if m := structField.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	if m := enumField.FindStringSubmatch(msg); m != nil {
		name := strings.ToLower(m[1][:1]) + m[1][1:]
		if path := findKey(data, name); path != "" {
			return path
		}
	}
	return "spec"
}

// decode returns the object, a non-fatal warning (unknown fields), or an
// error. A document without either is converted from YAML to JSON once
// (decodeClean); one with a problem is decoded again from YAML
// (decodeYAML), which finds its line and field.
func (d *decoder) decode(data []byte) (runtime.Object, *decodeError, *decodeError) {
	if obj := d.decodeClean(data); obj != nil {
		return obj, nil, nil
	}
	return d.decodeYAML(data)
}

// decodeClean returns the object of a document that decodeYAML decodes
// without a warning or an error, converting its YAML to JSON once (where
// decodeYAML does it three or four times); else nil. Every step is the one
// decodeYAML takes, on the same JSON, so the object is the same: strict
// YAML (no duplicate keys) gives the JSON YAMLToJSON gives, and that JSON
// is what the YAML serializer decodes. The serializer reads apiVersion and
// kind as decodeYAML's first step does (encoding/json into the same
// fields) and fails without them, so that step is not repeated.
func (d *decoder) decodeClean(data []byte) runtime.Object {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil
	}
	obj, _, err := d.fromJSON.Decode(js, nil, nil)
	if err != nil || obj == nil {
		return nil
	}
	if istioSpecWarning(data, js, obj) != nil {
		return nil
	}
	clearCreated(obj)
	return obj
}

// decodeYAML decodes a document from YAML, naming the line or field of
// what is wrong with it.
func (d *decoder) decodeYAML(data []byte) (runtime.Object, *decodeError, *decodeError) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		de := &decodeError{reason: "InvalidYAML", message: err.Error()}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			de.line, _ = strconv.Atoi(m[1])
		}
		return nil, nil, de
	}
	switch {
	case tm.APIVersion == "":
		return nil, nil, &decodeError{field: "apiVersion", reason: "MissingAPIVersion", message: "apiVersion is required"}
	case tm.Kind == "":
		return nil, nil, &decodeError{field: "kind", reason: "MissingKind", message: "kind is required"}
	}
	obj, _, err := d.serializer.Decode(data, nil, nil)
	clearCreated(obj)
	switch {
	case err == nil:
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			return obj, nil, nil
		}
		return obj, istioSpecWarning(data, js, obj), nil
	case runtime.IsNotRegisteredError(err):
		return nil, nil, &decodeError{field: "kind", reason: "UnknownKind",
			message: fmt.Sprintf("%s %s is not used by the control plane; ignored", tm.APIVersion, tm.Kind)}
	case runtime.IsStrictDecodingError(err) && obj != nil:
		return obj, &decodeError{reason: "UnknownField", message: err.Error()}, nil
	}
	return nil, nil, &decodeError{field: errorField(data, err.Error()), reason: "InvalidObject", message: err.Error()}
}

// clearCreated drops a creationTimestamp written in a file: objects read
// from files have no creation time (the API server sets it), so of two
// ServiceEntries naming one host the first by namespace/name wins, and a
// file cannot claim to be older.
func clearCreated(obj runtime.Object) {
	if obj == nil {
		return
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetCreationTimestamp(metav1.Time{})
	}
}
