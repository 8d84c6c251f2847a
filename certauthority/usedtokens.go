package certauthority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// UsedTokenStore remembers which single-use bootstrap tokens were used.
type UsedTokenStore interface {
	// MarkUsed records id as used until expiry. It returns false when id was used before.
	MarkUsed(ctx context.Context, id string, expiry time.Time) (first bool, err error)
}

// UsedTokensFileName is the file FileUsedTokens keeps in the data dir.
const UsedTokensFileName = "used-bootstrap-tokens.json"

// FileUsedTokens keeps used token IDs in a JSON file (id -> expiry, RFC 3339), guarded by
// an flock so processes sharing a data dir agree. Expired entries are pruned on write.
type FileUsedTokens struct {
	Path string
	Now  func() time.Time // defaults to time.Now
	mu   sync.Mutex
}

// NewFileUsedTokens keeps used token IDs in DATA_DIR/used-bootstrap-tokens.json.
func NewFileUsedTokens(dataDir string) *FileUsedTokens {
	return &FileUsedTokens{Path: filepath.Join(dataDir, UsedTokensFileName)}
}

// MarkUsed implements UsedTokenStore.
func (f *FileUsedTokens) MarkUsed(_ context.Context, id string, expiry time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	unlock, err := lockFile(f.Path + ".lock")
	if err != nil {
		return false, err
	}
	defer unlock()
	used, err := f.read()
	if err != nil {
		return false, err
	}
	if _, ok := used[id]; ok {
		return false, nil
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	pruneUsed(used, now())
	used[id] = expiry.UTC().Format(time.RFC3339)
	data, err := json.MarshalIndent(used, "", "  ")
	if err != nil {
		return false, fmt.Errorf("encode used tokens: %w", err)
	}
	if err := writeFileAtomic(f.Path, data, 0o600); err != nil {
		return false, fmt.Errorf("record used token: %w", err)
	}
	return true, nil
}

func (f *FileUsedTokens) read() (map[string]string, error) {
	used := map[string]string{}
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return used, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read used tokens: %w", err)
	}
	if err := json.Unmarshal(data, &used); err != nil {
		return nil, fmt.Errorf("read used tokens %s: %w", f.Path, err)
	}
	return used, nil
}

// pruneUsed drops entries whose token expired over an hour ago: it is refused anyway.
func pruneUsed(used map[string]string, now time.Time) {
	for id, exp := range used {
		if t, err := time.Parse(time.RFC3339, exp); err == nil && t.Add(time.Hour).Before(now) { // an hour of slack for clock skew
			delete(used, id)
		}
	}
}

func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	lf, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close() //nolint:errcheck // the lock error is the one to report
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
		lf.Close()                                   //nolint:errcheck // nothing was written
	}, nil
}
