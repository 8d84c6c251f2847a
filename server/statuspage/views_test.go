package statuspage_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestProxiesViewFiltersPagesAndShowsNACKs(t *testing.T) {
	f := start(t, meshStore(t, 5))
	f.connectProxies(t, 60)
	bad := nodeID(60)

	l := f.proxies(t, "?state=NACKED")
	if l.Total != 61 || l.Matched != 1 || len(l.Rows) != 1 || l.Rows[0].ID != bad {
		t.Fatalf("state=NACKED: total %d, matched %d, rows %+v; want the one NACKing proxy of 61", l.Total, l.Matched, l.Rows)
	}
	eds := l.Rows[0].Types[2]
	if eds.Type != "EDS" || eds.State != "NACKED" || eds.Error != nackError {
		t.Errorf("NACKing proxy's EDS = %+v, want NACKED with %q", eds, nackError)
	}
	if l.Rows[0].Identity != "default/sa-"+bad[len(bad)-5:]+" (claimed)" || l.Rows[0].Replica != "cp-0" {
		t.Errorf("row identity %q replica %q", l.Rows[0].Identity, l.Rows[0].Replica)
	}
	if l := f.proxies(t, "?q=weight+out+of"); l.Matched != 1 {
		t.Errorf("text filter on the NACK error matched %d, want 1", l.Matched)
	}
	if l := f.proxies(t, "?state=SYNCED&page=2"); l.Matched != 60 || l.Pages != 2 || l.Page != 2 || len(l.Rows) != 10 {
		t.Errorf("SYNCED page 2: matched %d, page %d of %d, %d rows; want 60, 2 of 2, 10", l.Matched, l.Page, l.Pages, len(l.Rows))
	}

	// Without JavaScript: the server-rendered table, filtered by the form's query.
	resp, page := f.get(t, "/proxies?q=pod-60.")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, nackError) || !strings.Contains(page, bad) || strings.Contains(page, nodeID(1)+"<") {
		t.Errorf("/proxies?q=pod-60. = %d, want the NACKing proxy's row and error only:\n%s", resp.StatusCode, page)
	}
	if strings.Contains(page, `rel="next"`) {
		t.Errorf("one matching proxy but a next page link")
	}
	_, page = f.get(t, "/proxies")
	if !strings.Contains(page, `rel="next" href="/proxies?page=2"`) || !strings.Contains(page, "61 of 61 proxies match; page 1 of 2.") {
		t.Errorf("/proxies has no pager to page 2 of 2")
	}
}

func TestOverviewReadableWithoutScript(t *testing.T) {
	f := start(t, meshStore(t, 3))
	f.connectProxies(t, 2)
	resp, page := f.get(t, "/")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, want := range []string{
		`<span id="proxy-count" data-k="proxies">3</span> connected`,
		`href="/proxies?state=NACKED">NACKED</a></th><td data-k="byState.NACKED" data-default="0">1</td>`,
		`<tr><td>pod-sidecar</td><td>3</td></tr>`,
		`<dt>Services</dt><dd><a href="/services" data-k="services">3</a></dd>`,
		`<span data-k="endpoints">6</span> (<span data-k="readyEndpoints">3</span> healthy)`,
		`<tr><td>test store</td><td>true</td></tr>`,
		`<svg role="img"`,
		`<script src="/assets/app.js" defer></script>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	if regexp.MustCompile(`(?i)<(script|link)[^>]+(src|href)="(https?:)?//`).MatchString(page) {
		t.Errorf("overview loads something from another host")
	}
	for _, asset := range []string{"/assets/app.js", "/assets/style.css"} {
		if resp, body := f.get(t, asset); resp.StatusCode != http.StatusOK || len(body) < 500 {
			t.Errorf("GET %s = %d, %d bytes", asset, resp.StatusCode, len(body))
		}
	}
	if resp, _ := f.get(t, "/nothing-here"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing-here = %d, want 404", resp.StatusCode)
	}
}

func TestProxyPageShowsConfigAndDownload(t *testing.T) {
	f := start(t, meshStore(t, 2))
	f.connectProxies(t, 1)
	conn := f.proxies(t, "?state=NACKED").Rows[0].Connection
	resp, page := f.get(t, "/proxy?id="+conn)
	for _, want := range []string{
		`<details class="xds-type" id="type-CDS">`,
		`<code>outbound|5000||svc-1.default.svc.cluster.local</code>`,
		`version `, nackError, `/proxy/config.json?id=`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("proxy page (%d) lacks %s", resp.StatusCode, want)
		}
	}
	resp, body := f.get(t, "/proxy/config.json?id="+conn)
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=") || !strings.Contains(body, `"resources"`) {
		t.Errorf("download: Content-Disposition %q, body starts %.100s", cd, body)
	}
	if resp, page := f.get(t, "/proxy?id=sidecar~1.2.3.4~gone.default~default.svc.cluster.local"); resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "not connected") {
		t.Errorf("unknown proxy: %d", resp.StatusCode)
	}
}

func TestServicesView(t *testing.T) {
	f := start(t, meshStore(t, 2))
	_, body := f.get(t, "/api/services?q=svc-1")
	for _, want := range []string{`"host":"svc-1.default.svc.cluster.local"`, `"health":"healthy"`, `"health":"unhealthy"`, `"ports":["5000/TCP tcp"]`} {
		if !strings.Contains(body, want) {
			t.Errorf("/api/services?q=svc-1 lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "svc-0.") {
		t.Errorf("filter svc-1 shows svc-0")
	}
	_, page := f.get(t, "/services")
	if !strings.Contains(page, `<th scope="row">svc-0.default.svc.cluster.local</th>`) {
		t.Errorf("services page lacks svc-0")
	}
}
