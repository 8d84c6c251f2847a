package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/librarymesh/controlplane/internal/e2e"
)

// chromium returns Debian's chromium (installed by .ci/run). When it is
// missing the test fails under CI=true and is skipped otherwise.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is missing: apt-get install -y chromium (.ci/run does)")
	}
	t.Skip("chromium is missing: apt-get install -y chromium")
	return ""
}

// browser starts headless chromium for the test and returns its context.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// screenshot saves the whole page as dir/name.png and logs the path.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// polled waits until the page's JavaScript expression is true.
func polled(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))
}

// TestStatusPageInHeadlessChromium drives the status page of `serve` with
// the example mesh plus a good and a bad ServiceEntry, with two grpc-go
// xDS clients connected (the bad one NACKs its EDS): the overview shows
// the proxy count, the Proxies view filters to the NACKing proxy and shows
// its error, its page shows its config, and a ServiceEntry written to the
// folder appears in the Services view without a reload. Screenshots go to
// the test's temp dir, or to $CONTROLPLANE_SCREENSHOT_DIR when set.
func TestStatusPageInHeadlessChromium(t *testing.T) {
	chrome := chromium(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e2e.ModuleRoot(), "examples", "library"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status.yaml"), []byte(statusMesh), 0o644); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("CONTROLPLANE_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	s := e2e.Serve(t, "--config-dir", dir)
	grpcXDSClient(t, s.GRPCAddr, goodGRPCNode, "good.default.svc.cluster.local:8080")
	grpcXDSClient(t, s.GRPCAddr, badGRPCNode, "bad.default.svc.cluster.local:8080")
	ctx := browser(t, chrome)
	base := "http://" + s.HTTPAddr

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"),
		polled(`document.getElementById("proxy-count").textContent === "2"`)); err != nil {
		t.Fatalf("overview: the proxy count never showed 2: %v\n%s", err, s.Logs())
	}
	count, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#proxy-count")))
	if err != nil || count != "2" {
		t.Fatalf("overview proxy count %q, %v; want 2", count, err)
	}
	t.Logf("overview shows %s proxies", count)
	screenshot(t, ctx, shots, "overview")

	nackedOnly(t, ctx, base)
	screenshot(t, ctx, shots, "proxies-nacked")

	// The table is rebuilt by every live refresh (2 s), so a pointer
	// click, pressed on one row and released on its replacement, can be
	// lost; the link is clicked in the page, in one step.
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS("#proxies tbody th a")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#proxies tbody th a").click()`),
		chromedp.WaitVisible(chromedp.CSS("#type-CDS")),
		chromedp.Click(chromedp.CSS("#type-CDS > summary")),
		chromedp.Click(chromedp.CSS("#type-CDS details.resource > summary")),
	); err != nil {
		t.Fatalf("proxy page: %v", err)
	}
	cds, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#type-CDS")))
	if err != nil {
		t.Fatal(err)
	}
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(url, "/proxy?id=") || !strings.Contains(cds, "outbound|8080||bad.default.svc.cluster.local") {
		t.Errorf("proxy page %s: CDS section lacks the bad service's cluster:\n%.2000s", url, cds)
	}
	screenshot(t, ctx, shots, "proxy-config")

	newServiceAppears(t, ctx, dir)
	screenshot(t, ctx, shots, "services-new")
}

// nackedOnly goes to Proxies by the nav link, filters by typing and by
// state, and checks that only the NACKing proxy is listed, with its error.
func nackedOnly(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/proxies"]`)),
		chromedp.WaitVisible(chromedp.CSS("#proxies")),
		chromedp.SendKeys(chromedp.CSS("#q"), "client"),
		chromedp.SetValue(chromedp.CSS("#state"), "NACKED"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("state").dispatchEvent(new Event("change", {bubbles: true}))`),
		polled(`document.querySelector("#proxies tbody").textContent.includes("sum of weights of localities") &&
			!document.querySelector("#proxies tbody").textContent.includes("good-client")`),
	)
	if err != nil {
		t.Fatalf("proxies view: the NACK error never showed: %v", err)
	}
	table, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#proxies tbody")))
	if err != nil {
		t.Fatal(err)
	}
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, badGRPCNode) || strings.Contains(table, goodGRPCNode) || !strings.Contains(table, "EDS NACKED") {
		t.Errorf("filtered to NACKED, the table is:\n%s", table)
	}
	if url != base+"/proxies?q=client&state=NACKED" {
		t.Errorf("the filter is not in the URL: %s", url)
	}
}

// newServiceAppears opens Services, writes a ServiceEntry into the watched
// folder and waits for its host to appear on the same page (no reload:
// a marker set on the page's window survives).
func newServiceAppears(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	const host = "added.default.svc.cluster.local"
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/services"]`)),
		chromedp.WaitVisible(chromedp.CSS("#services")),
		chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`),
	); err != nil {
		t.Fatalf("services view: %v", err)
	}
	before, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#services")))
	if err != nil || strings.Contains(before, host) {
		t.Fatalf("services view before the edit (err %v) already shows %s", err, host)
	}
	e2e.WriteFileAtomic(t, filepath.Join(dir, "added.yaml"), `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: added, namespace: default}
spec:
  hosts: [`+host+`]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 9090, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.9}]
`)
	if err := chromedp.Do(ctx, polled(`window.sameDocument === true && document.querySelector("#services tbody").textContent.includes("`+host+`")`)); err != nil {
		t.Fatalf("%s never appeared in the open services view: %v", host, err)
	}
}
