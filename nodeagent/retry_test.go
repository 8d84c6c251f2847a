package nodeagent

import (
	"strings"
	"testing"
	"time"
)

func TestNextRetry(t *testing.T) {
	a := &Agent{cfg: Config{RetryMin: time.Second, RetryMax: 10 * time.Second}}
	cases := []struct{ last, lo, hi time.Duration }{
		{0, time.Second, 1200 * time.Millisecond},
		{time.Second, 2 * time.Second, 2400 * time.Millisecond},
		{4 * time.Second, 8 * time.Second, 9600 * time.Millisecond},
		{8 * time.Second, 10 * time.Second, 10 * time.Second},
		{time.Hour, 10 * time.Second, 10 * time.Second},
	}
	for _, tc := range cases {
		for range 20 {
			if got := a.nextRetry(tc.last); got < tc.lo || got > tc.hi {
				t.Errorf("nextRetry(%s) = %s, want in [%s, %s]", tc.last, got, tc.lo, tc.hi)
			}
		}
	}
}

func TestParseToken(t *testing.T) {
	cases := map[string]string{
		"":                           "three base64url parts",
		"a.b":                        "three base64url parts",
		"a..c":                       "three base64url parts",
		"a.!!.c":                     "not base64url",
		"a.bm90IGpzb24.c":            "not JSON",
		"a.eyJucyI6ImRlZmF1bHQifQ.c": "lacks ns, sa or exp",
	}
	for tok, want := range cases {
		if _, err := ParseToken(tok); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseToken(%q) = %v, want %q", tok, err, want)
		}
	}
	c, err := ParseToken("a.eyJucyI6ImRlZmF1bHQiLCJzYSI6InBnIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c")
	if err != nil || c.Namespace != "default" || c.ServiceAccount != "pg" || c.ExpiresAt().Year() != 2100 {
		t.Errorf("ParseToken = %+v, %v", c, err)
	}
}
