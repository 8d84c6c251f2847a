package register

import (
	"bytes"
	"fmt"
	"strings"

	netv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// UnmarshalYAML reads back a file written by MarshalYAML.
func UnmarshalYAML(data []byte) ([]Object, error) {
	var out []Object
	for i, doc := range splitDocs(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var o Object
		switch tm.Kind {
		case KindService:
			o = &corev1.Service{}
		case KindEndpointSlice:
			o = &discoveryv1.EndpointSlice{}
		case KindServiceEntry:
			o = &netv1.ServiceEntry{}
		case KindWorkloadEntry:
			o = &netv1.WorkloadEntry{}
		default:
			return nil, fmt.Errorf("document %d: kind %q is not one register writes", i+1, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, o); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, tm.Kind, err)
		}
		out = append(out, o)
	}
	return out, nil
}

func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if strings.TrimSpace(stripComments(string(d))) != "" {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
