package yamldir

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime"
)

var protoUnknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

// istioSpecWarning reports the first unknown field in an Istio object's spec.
// Istio's own JSON decoding skips unknown fields, so without this check a
// misspelt field (`resolutoin: DNS`) would be dropped without a word. The
// spec is decoded again with protojson, which refuses them; other decoding
// differences are not reported here (the object decoded already). data is
// the document's YAML, js the same as JSON.
func istioSpecWarning(data, js []byte, obj runtime.Object) *decodeError {
	spec := specMessage(obj)
	if spec == nil {
		return nil
	}
	var doc struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(js, &doc); err != nil || len(doc.Spec) == 0 {
		return nil
	}
	err := protojson.Unmarshal(doc.Spec, spec.ProtoReflect().New().Interface())
	m := protoUnknownField.FindStringSubmatch(fmt.Sprint(err))
	if err == nil || m == nil {
		return nil
	}
	field := findKey(data, m[1])
	if field == "" {
		field = "spec"
	}
	return &decodeError{field: field, reason: "UnknownField",
		message: fmt.Sprintf("unknown field %q; ignored (is it misspelt?)", m[1])}
}

// specMessage returns obj's Spec when it is a protobuf message (the Istio
// types), else nil.
func specMessage(obj runtime.Object) proto.Message {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("Spec")
	if !f.IsValid() || !f.CanAddr() {
		return nil
	}
	m, _ := f.Addr().Interface().(proto.Message)
	return m
}
