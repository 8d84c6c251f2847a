package vmbundle

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/librarymesh/controlplane/certauthority"
)

func TestRunWithRealCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := certauthority.New(context.Background(), certauthority.Config{
		Store: certauthority.DirStore{Dir: filepath.Join(dir, "ca")}, UsedTokens: certauthority.NewFileUsedTokens(dir),
	})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{BundleOptions: testOptions(), OutDir: filepath.Join(dir, "bundle"), TokenTTL: time.Hour, SingleUse: true}
	o.Token, o.RootPEM = "", nil
	var out bytes.Buffer
	o.Out = &out
	if err := Run(t.Context(), o, ca); err != nil {
		t.Fatal(err)
	}
	b, err := ReadBundle(o.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.RootPEM, ca.RootPEM()) || strings.Count(b.Token, ".") != 2 {
		t.Errorf("bundle root/token not from the CA: token %q", b.Token)
	}
	if !strings.Contains(out.String(), "README.md") {
		t.Errorf("output = %s", out.String())
	}
	if err := Run(t.Context(), Options{BundleOptions: testOptions()}, ca); err == nil {
		t.Error("want an error without -o")
	}
}
