package yamldir

import (
	"context"
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/librarymesh/controlplane/registry"
)

// DefaultSettle is how long the source waits after the last file event
// before it reads, so that an editor's write (truncate, write, rename) is
// read once and whole.
const DefaultSettle = 100 * time.Millisecond

// Dir is a watched YAML directory.
type Dir struct {
	dir    string
	store  *registry.Store
	logger *slog.Logger
	settle time.Duration
	// maxFileBytes is the largest file read (DefaultMaxFileBytes).
	maxFileBytes int64
	ready        chan struct{}
	loaded       map[string]bool // files whose objects are in the store; owned by Start
}

// Option configures a Dir.
type Option func(*Dir)

// WithSettle sets the delay between the last file event and the reload.
func WithSettle(d time.Duration) Option { return func(s *Dir) { s.settle = d } }

// WithMaxFileBytes sets the largest file the source reads; a larger file
// is reported (FileTooLarge) and its last good objects stay in force.
func WithMaxFileBytes(n int64) Option {
	return func(s *Dir) {
		if n > 0 {
			s.maxFileBytes = n
		}
	}
}

// New returns a source for dir that writes into store. Nothing happens
// until Start.
func New(dir string, store *registry.Store, logger *slog.Logger, opts ...Option) *Dir {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Dir{dir: filepath.Clean(dir), store: store, logger: logger, settle: DefaultSettle, maxFileBytes: DefaultMaxFileBytes,
		ready: make(chan struct{}), loaded: map[string]bool{}}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Ready is closed once the initial load is in the store.
func (d *Dir) Ready() <-chan struct{} { return d.ready }

// Start loads the directory, then watches it (and new subdirectories) and
// applies every change, until ctx ends. It returns an error only if the
// directory cannot be watched.
func (d *Dir) Start(ctx context.Context) error {
	dec, err := newDecoder(d.maxFileBytes)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewBufferedWatcher(eventBuffer)
	if err != nil {
		return fmt.Errorf("watch %s: %w", d.dir, err)
	}
	defer w.Close()
	if err := d.watchTree(w, d.dir); err != nil {
		return err
	}
	d.rescan(dec)
	close(d.ready)
	d.logger.Info("yaml directory loaded", "file", d.dir, "files", len(d.loaded))
	return d.loop(ctx, w, dec)
}

// eventBuffer is how many file events the watcher queues: a tool renaming
// several files in one go gets them read together (see loop).
const eventBuffer = 1024

func (d *Dir) loop(ctx context.Context, w *fsnotify.Watcher, dec *decoder) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	pending := map[string]bool{}
	quick := true // every pending event created a YAML file
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// With the events queued behind it: a tool's renames of
			// several files come in one read of the kernel's queue.
			for more := true; ok && more; {
				pending[ev.Name] = true
				quick = quick && quickEvent(ev)
				select {
				case ev, ok = <-w.Events:
				default:
					more = false
				}
			}
			if !ok {
				return nil
			}
			if !quick {
				timer.Reset(d.settle)
				continue
			}
			// Files renamed into place (how tools write atomically) are
			// whole: read them now. (A timer here waits a millisecond or
			// two at least, most of a lone edit's way to the model.)
			timer.Stop()
			if !d.applyWhole(dec, pending) {
				// A created file that does not read cleanly may still be
				// being written: read it again once the folder settles.
				quick = false
				timer.Reset(d.settle)
				continue
			}
			clear(pending)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.logger.Warn("yaml directory watch error; rescanning", "file", d.dir, "error", err)
			pending[d.dir] = true // an overflow loses events: read everything again
			quick = false
			timer.Reset(d.settle)
		case <-timer.C:
			d.applyEvents(w, dec, pending)
			clear(pending)
			quick = true
		}
	}
}

// quickEvent reports whether an event leaves files whole: a YAML file
// created (or renamed into place), or anything done to a temporary file
// beside it (".name", as editors and atomic writers use; a ConfigMap's
// "..data" swap is not one).
func quickEvent(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	if strings.HasPrefix(base, ".") && !strings.HasPrefix(base, "..") {
		return true
	}
	return ev.Op == fsnotify.Create && isYAML(ev.Name)
}

// applyWhole applies the created files, in one write, if every one reads
// without a problem; otherwise it applies nothing and returns false.
func (d *Dir) applyWhole(dec *decoder, created map[string]bool) bool {
	var paths []string
	for path := range created {
		if isYAML(path) { // not a temporary
			paths = append(paths, path)
		}
	}
	slices.Sort(paths)
	updates := slices.Collect(dec.readFiles(paths))
	for _, u := range updates {
		if len(u.Problems) > 0 || u.Partial {
			return false
		}
	}
	d.apply(slices.Values(updates))
	return true
}

// applyEvents reloads the YAML files that changed, in one write. Anything
// else (a new or removed directory, a symlink swap as in a mounted
// ConfigMap) triggers a rescan of the whole tree.
func (d *Dir) applyEvents(w *fsnotify.Watcher, dec *decoder, pending map[string]bool) {
	full := false
	for path := range pending {
		if !isYAML(path) || strings.Contains(path, string(filepath.Separator)+".") {
			full = true
		}
	}
	if full {
		if err := d.watchTree(w, d.dir); err != nil {
			d.logger.Warn("yaml directory watch", "file", d.dir, "error", err)
		}
		d.rescan(dec)
		return
	}
	d.apply(dec.readFiles(slices.Sorted(maps.Keys(pending))))
}

// rescan reads every YAML file and drops the objects of files that are
// gone, in one write: the model moves from the old folder to the new at
// once.
func (d *Dir) rescan(dec *decoder) {
	files, err := yamlFiles(d.dir)
	if err != nil {
		d.logger.Warn("yaml directory scan", "file", d.dir, "error", err)
		return
	}
	var gone []string
	for f := range d.loaded {
		if _, found := slices.BinarySearch(files, f); !found {
			gone = append(gone, f) // reads as deleted: its objects go
		}
	}
	slices.Sort(gone)
	d.apply(dec.readFiles(append(files, gone...)))
}

// apply puts files' objects in the store in one write and logs one line
// for it when the model changed.
func (d *Dir) apply(us iter.Seq[registry.OriginUpdate]) {
	before := d.store.View().Revision()
	var origins []string
	objects := 0
	ps := d.store.ApplyAll(func(yield func(registry.OriginUpdate) bool) {
		for u := range us {
			origins = append(origins, u.Origin)
			objects += len(u.Items)
			if !yield(u) {
				return
			}
		}
	})
	problems := 0
	for i, origin := range origins {
		if _, err := os.Stat(origin); err == nil {
			d.loaded[origin] = true
		} else {
			delete(d.loaded, origin)
		}
		problems += len(ps[i])
	}
	after := d.store.View().Revision()
	if after == before {
		return
	}
	attrs := []any{"files", len(origins), "version", after, "objects", objects, "problems", problems}
	if len(origins) == 1 {
		attrs = append([]any{"file", origins[0]}, attrs...)
	} else {
		attrs = append([]any{"dir", d.dir}, attrs...)
	}
	d.logger.Info("config changed", attrs...)
}

// watchTree watches dir and every directory under it (fsnotify is not
// recursive). Adding a watch twice is harmless.
func (d *Dir) watchTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return fmt.Errorf("watch %s: %w", dir, err)
			}
			return nil // vanished meanwhile
		}
		if !e.IsDir() {
			return nil
		}
		if err := w.Add(path); err != nil {
			return fmt.Errorf("watch %s: %w", path, err)
		}
		return nil
	})
}
