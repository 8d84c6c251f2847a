package kubetest

import (
	"errors"
	"testing"
)

func TestMissingBinariesSkipOnlyOutsideCI(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{{"", true}, {"false", true}, {"true", false}} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
			e, err := Start()
			if stopErr := e.Stop(); stopErr != nil {
				t.Error(stopErr)
			}
			if !errors.Is(err, ErrMissingBinaries) {
				t.Fatalf("Start with an empty assets folder: %v, want ErrMissingBinaries", err)
			}
			if got := skippable(err); got != tc.wantSkip {
				t.Errorf("skippable = %v, want %v", got, tc.wantSkip)
			}
		})
	}
	if skippable(errors.New("port in use")) {
		t.Error("another start error must not skip")
	}
}
