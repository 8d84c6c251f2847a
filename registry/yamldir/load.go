// Package yamldir is the YAML directory source: every *.yaml and *.yml file
// under a directory (multi-document, the same objects as in Kubernetes)
// becomes one origin in the registry, and changes are watched.
package yamldir

import (
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/librarymesh/controlplane/registry"
)

// Load reads every YAML file under dir into the store once (no watch) and
// returns the store's problems. Files are origins named by their path.
// Files are read as Dir reads them (regular files up to DefaultMaxFileBytes,
// in parallel, into the store in one write).
func Load(dir string, store *registry.Store) []registry.Problem {
	dec, err := newDecoder(DefaultMaxFileBytes)
	if err != nil {
		return []registry.Problem{{Source: dir, Reason: "Internal", Message: err.Error()}}
	}
	files, err := yamlFiles(dir)
	if err != nil {
		return []registry.Problem{{Source: dir, Reason: "ReadError", Message: err.Error()}}
	}
	store.ApplyAll(dec.readFiles(files))
	return store.Problems()
}

// isYAML reports whether a path names a YAML file the source reads.
func isYAML(path string) bool {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") { // editor temporaries, hidden files
		return false
	}
	ext := strings.ToLower(filepath.Ext(base))
	return ext == ".yaml" || ext == ".yml"
}

// yamlFiles lists the YAML files under dir, sorted.
func yamlFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && isYAML(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	slices.Sort(files)
	return files, nil
}

// readFiles reads and decodes files, up to GOMAXPROCS at a time, and
// yields their updates in the order of paths (so that applying them, and
// the problems that reports, do not depend on which finished first), each
// as soon as it and those before it are read: the store writes one while
// the next ones are decoded.
func (d *decoder) readFiles(paths []string) iter.Seq[registry.OriginUpdate] {
	return func(yield func(registry.OriginUpdate) bool) {
		workers := min(runtime.GOMAXPROCS(0), len(paths))
		if workers <= 1 {
			for _, p := range paths {
				if !yield(d.readFile(p)) {
					return
				}
			}
			return
		}
		out := make([]registry.OriginUpdate, len(paths))
		ready := make([]chan struct{}, len(paths))
		for i := range ready {
			ready[i] = make(chan struct{})
		}
		var (
			next atomic.Int64 // the next path to read
			stop atomic.Bool  // the caller stopped early
			wg   sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(paths) && !stop.Load(); i = int(next.Add(1) - 1) {
					out[i] = d.readFile(paths[i])
					close(ready[i])
				}
			})
		}
		defer wg.Wait()
		for i := range paths {
			<-ready[i]
			u := out[i]
			out[i] = registry.OriginUpdate{} // the store has it now
			if !yield(u) {
				stop.Store(true)
				return
			}
		}
	}
}

// readFile decodes one file into an update of its origin. A file that
// cannot be read (not a regular file, over the size limit) keeps all its
// objects (Partial); a document that does not decode keeps the objects the
// file no longer lists. At most MaxFileProblems document problems are kept,
// and the rest are counted (DroppedProblems).
func (d *decoder) readFile(path string) registry.OriginUpdate {
	u := registry.OriginUpdate{Origin: path}
	data, err := readRegular(path, d.maxBytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return u // deleted: all its objects go
		}
		u.Partial = true
		u.Problems = []registry.Problem{{Source: path, Reason: reasonOf(err), Message: err.Error()}}
		return u
	}
	return d.decodeFile(path, data)
}

// decodeFile decodes a file's content into an update of its origin.
func (d *decoder) decodeFile(path string, data []byte) registry.OriginUpdate {
	u := registry.OriginUpdate{Origin: path}
	for _, doc := range splitDocuments(data) {
		d.readDocument(path, doc, &u)
	}
	return u
}

func (d *decoder) readDocument(path string, doc document, u *registry.OriginUpdate) {
	obj, warn, derr := d.decode(doc.data)
	at := func(rel int) string {
		if rel <= 0 {
			return fmt.Sprintf("%s:%d", path, doc.startLine)
		}
		return fmt.Sprintf("%s:%d", path, doc.firstLine+rel-1)
	}
	docProblem := func(e *decodeError) registry.Problem {
		line := e.line
		if line == 0 && e.field != "" {
			line = fieldLine(doc.data, e.field)
		}
		return registry.Problem{Source: at(line), Object: fmt.Sprintf("document %d", doc.index),
			Field: e.field, Reason: e.reason, Message: e.message}
	}
	if derr != nil {
		addProblem(u, docProblem(derr))
		if derr.reason != registry.ReasonUnknownKind {
			u.Partial = true
		}
		return
	}
	if warn != nil {
		p := docProblem(warn)
		if key, err := registry.KeyOf(obj); err == nil {
			p.Object, p.Message = key.String(), p.Object+": "+p.Message
		}
		addProblem(u, p)
	}
	u.Items = append(u.Items, registry.Item{
		Object:  obj,
		Source:  at(0),
		Locate:  func(field string) string { return at(fieldLine(doc.data, field)) },
		Context: fmt.Sprintf("document %d", doc.index),
	})
}

// addProblem keeps a document problem, or counts it once the file has
// registry.MaxOriginProblems.
func addProblem(u *registry.OriginUpdate, p registry.Problem) {
	if len(u.Problems) >= registry.MaxOriginProblems {
		u.DroppedProblems++
		return
	}
	u.Problems = append(u.Problems, p)
}
