package certauthority

import (
	"strings"
	"testing"
	"time"
)

// FuzzDecodeRotation feeds any bytes as rotation.json (written by `ca rotate`
// and the server, read by every replica): it decodes to a record whose
// phase is known and whose material makes a CA, or is refused with an error
// naming the file; it never panics, and a decoded record encodes back to one
// that decodes the same.
func FuzzDecodeRotation(f *testing.F) {
	next, err := generateRoot(Config{KeyAlgorithm: ECDSAP256, TrustDomain: DefaultTrustDomain, RootTTL: time.Hour, Now: time.Now})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	good := (&Rotation{Phase: PhaseTrustNew, Started: now, PhaseSince: now, Next: *next}).Encode()
	for _, seed := range [][]byte{
		good, []byte(strings.Replace(string(good), string(PhaseTrustNew), "sideways", 1)),
		(&Rotation{Phase: PhaseSignNew, OldValidUntil: now, Force: true, Next: *next}).Encode(),
		(&Rotation{Phase: PhaseDropOld}).Encode(), []byte(`{}`), []byte(`{"phase":"trust-new","extra":1}`),
		[]byte(`null`), nil, []byte(`{"phase":"drop-old","next":{"CertPEM":"AAAA"}}`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRotation(b)
		if err != nil {
			if !strings.Contains(err.Error(), RotationFile) {
				t.Fatalf("error does not name %s: %v", RotationFile, err)
			}
			return
		}
		again, err := DecodeRotation(r.Encode())
		if err != nil || again.Phase != r.Phase || again.Force != r.Force {
			t.Fatalf("re-encoded record: %+v, %v", again, err)
		}
	})
}
