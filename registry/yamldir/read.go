package yamldir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// DefaultMaxFileBytes is the largest YAML file the source reads (4 MiB).
const DefaultMaxFileBytes = 4 << 20

// Problem reasons of files the source does not read.
const (
	ReasonNotRegularFile = "NotRegularFile"
	ReasonFileTooLarge   = "FileTooLarge"
	ReasonReadError      = "ReadError"
)

// fileError is a file the source will not or cannot read.
type fileError struct {
	reason string
	err    error
}

func (e *fileError) Error() string { return e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// readRegular reads a regular file of at most maxBytes. It never blocks on
// a FIFO, a device or a socket: the type is checked before the file is
// opened (following a symlink), the open does not wait for a writer
// (O_NONBLOCK), and the opened file is checked again, so a file swapped
// between the check and the open is refused too. At most maxBytes+1 bytes
// are read, so a larger file (or an endless one) costs no more memory.
func readRegular(path string, maxBytes int64) ([]byte, error) {
	st, err := os.Stat(path) // follows symlinks: a link counts as what it points at
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, notRegular(path, st.Mode())
	}
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, &fileError{ReasonReadError, fmt.Errorf("stat %s: %w", path, err)}
	}
	if !st.Mode().IsRegular() {
		return nil, notRegular(path, st.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, &fileError{ReasonReadError, fmt.Errorf("read %s: %w", path, err)}
	}
	if int64(len(data)) > maxBytes {
		return nil, &fileError{ReasonFileTooLarge, fmt.Errorf("%s is larger than the limit of %d bytes (--config-max-file-bytes); not read", path, maxBytes)}
	}
	return data, nil
}

func notRegular(path string, mode fs.FileMode) error {
	return &fileError{ReasonNotRegularFile, fmt.Errorf("%s is not a regular file (%s); only regular files and symlinks to them are read", path, fileType(mode))}
}

// fileType names a non-regular file's type.
func fileType(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a device"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode.IsDir():
		return "a directory"
	}
	return "type " + mode.Type().String()
}

// reasonOf is the problem reason of a read error.
func reasonOf(err error) string {
	var fe *fileError
	if errors.As(err, &fe) {
		return fe.reason
	}
	return ReasonReadError
}
