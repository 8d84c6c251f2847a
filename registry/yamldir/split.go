package yamldir

import (
	"bytes"
	"strings"
)

// document is one YAML document of a file.
type document struct {
	index     int    // 0-based position among the file's non-empty documents
	firstLine int    // file line of data's first line (1-based)
	startLine int    // file line of the first content line
	data      []byte // the document's text
}

// splitDocuments splits a multi-document YAML file at "---" lines and drops
// documents that hold only comments and blank lines.
func splitDocuments(data []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(data, []byte("\n"))
	cur := document{firstLine: 1}
	var buf bytes.Buffer
	flush := func() {
		if cur.startLine > 0 {
			cur.data = append([]byte(nil), buf.Bytes()...)
			cur.index = len(docs)
			docs = append(docs, cur)
		}
		buf.Reset()
	}
	for i, raw := range lines {
		line := strings.TrimRight(string(raw), "\r\n")
		if isSeparator(line) {
			flush()
			cur = document{firstLine: i + 2}
			continue
		}
		if line == "..." {
			continue
		}
		buf.Write(raw)
		if cur.startLine == 0 && isContent(line) {
			cur.startLine = i + 1
		}
	}
	flush()
	return docs
}

func isSeparator(line string) bool {
	if !strings.HasPrefix(line, "---") {
		return false
	}
	rest := strings.TrimSpace(line[3:])
	return rest == "" || strings.HasPrefix(rest, "#")
}

func isContent(line string) bool {
	t := strings.TrimSpace(line)
	return t != "" && !strings.HasPrefix(t, "#") && t != "%YAML" && !strings.HasPrefix(t, "%")
}
