package statuspage_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/librarymesh/controlplane/server/statuspage"
)

// FuzzPageRequests sends any path and query to the page: every answer is
// 200, 400, 404 or a redirect to the cleaned path, never a panic, and
// text from the request is never echoed as markup.
func FuzzPageRequests(f *testing.F) {
	for _, seed := range []string{
		"/proxies?q=pod&state=NACKED&page=2&size=1000", "/api/proxies?page=-1&size=0", "/api/proxies?size=99999999999999999999",
		"/proxy?id=%00", "/proxy/config.json?id=../../etc/passwd", "/services?q=<script>alert(1)</script>",
		"/problems", "/api/overview", "/<b>x</b>", "/assets/../page.go", "/proxies?state=NOT%20SENT",
	} {
		f.Add(seed)
	}
	fx := start(f, meshStore(f, 2))
	fx.proxy(f, nodeID(0), false)
	page, err := statuspage.New(statuspage.Config{Server: fx.srv, Model: fx.store})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.URL, r.RequestURI = u, u.RequestURI()
		page.ServeHTTP(rec, r)
		switch rec.Code {
		case http.StatusOK, http.StatusNotFound, http.StatusBadRequest, http.StatusMovedPermanently, http.StatusTemporaryRedirect:
		default:
			t.Fatalf("GET %s = %d", target, rec.Code)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") && strings.Contains(u.RawQuery+u.Path, "<script>") &&
			strings.Contains(rec.Body.String(), "<script>alert") {
			t.Fatalf("GET %s echoes markup", target)
		}
	})
}
