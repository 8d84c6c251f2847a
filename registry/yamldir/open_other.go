//go:build !unix

package yamldir

import "os"

// openNonBlocking opens path for reading (readRegular checked its type).
func openNonBlocking(path string) (*os.File, error) { return os.Open(path) }
