package yamldir

import (
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// fieldLine returns the line (relative to the document, 1-based) of a field
// path such as "spec.ports[1].number" or "spec.endpoints[0].ports[tcp]", or
// of its deepest existing parent; 0 when the document does not parse.
func fieldLine(data []byte, field string) int {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return 0
	}
	node := root.Content[0]
	line := node.Line
	for _, seg := range splitField(field) {
		next, at := child(node, seg)
		if next == nil {
			break
		}
		node, line = next, at
	}
	return line
}

// splitField turns "a.b[1].c[x]" into ["a", "b", "1", "c", "x"].
func splitField(field string) []string {
	var out []string
	for _, part := range strings.Split(field, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			if i < 0 {
				out = append(out, part)
				break
			}
			if i > 0 {
				out = append(out, part[:i])
			}
			j := strings.IndexByte(part[i:], ']')
			if j < 0 {
				out = append(out, part[i+1:])
				break
			}
			out = append(out, part[i+1:i+j])
			part = part[i+j+1:]
		}
	}
	return out
}

// child returns a mapping value by key (and the key's line) or a sequence
// item by index (and its line).
func child(n *yaml.Node, seg string) (*yaml.Node, int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], n.Content[i].Line
		}
	}
	return nil, 0
}

// findKey returns the path ("spec.ports[1].number") of the first mapping
// key named key under spec, depth first, or "".
func findKey(data []byte, key string) string {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return ""
	}
	spec, _ := child(root.Content[0], "spec")
	if spec == nil {
		return ""
	}
	return searchKey(spec, "spec", key)
}

func searchKey(n *yaml.Node, path, key string) string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if k == key {
				return path + "." + k
			}
			if p := searchKey(n.Content[i+1], path+"."+k, key); p != "" {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if p := searchKey(item, path+"["+strconv.Itoa(i)+"]", key); p != "" {
				return p
			}
		}
	}
	return ""
}
