package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
)

// Kubernetes' probe defaults, which Istio's WorkloadGroup probe follows.
const (
	defaultProbePeriod  = 10 * time.Second
	defaultProbeTimeout = time.Second
	defaultSuccesses    = 1
	defaultFailures     = 3
)

// prober runs a readiness probe with Kubernetes semantics: the first run
// after the initial delay, then one every period, each bounded by the
// timeout; the workload starts unhealthy, becomes healthy after
// successThreshold passes in a row and unhealthy after failureThreshold
// failures in a row.
type prober struct {
	spec                   *networkingapi.ReadinessProbe
	host                   string // where httpGet and tcpSocket go unless they name a host: the VM's IP
	delay, period, timeout time.Duration
	successes, failures    int
	client                 *http.Client
	observe                func(ok bool) // called with every result; nil: none
}

func newProber(p *networkingapi.ReadinessProbe, host string) *prober {
	secs := func(s int32, def time.Duration) time.Duration {
		if s <= 0 {
			return def
		}
		return time.Duration(s) * time.Second
	}
	count := func(n int32, def int) int {
		if n <= 0 {
			return def
		}
		return int(n)
	}
	pr := &prober{spec: p, host: host, delay: secs(p.GetInitialDelaySeconds(), 0),
		period: secs(p.GetPeriodSeconds(), defaultProbePeriod), timeout: secs(p.GetTimeoutSeconds(), defaultProbeTimeout),
		successes: count(p.GetSuccessThreshold(), defaultSuccesses), failures: count(p.GetFailureThreshold(), defaultFailures)}
	// Kubernetes' HTTPS probes skip verification; so do Istio's.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true} //nolint:gosec // as Kubernetes probes
	pr.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return pr
}

// run probes until ctx ends and calls report with every change of state
// (the first result included once a threshold is reached).
func (pr *prober) run(ctx context.Context, report func(healthy bool, message string)) {
	timer := time.NewTimer(pr.delay)
	defer timer.Stop()
	healthy, known := false, false
	streak, last := 0, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(pr.period)
		err := pr.once(ctx)
		if ctx.Err() != nil {
			return
		}
		ok := err == nil
		if pr.observe != nil {
			pr.observe(ok)
		}
		if ok != last {
			streak, last = 0, ok
		}
		streak++
		need := pr.failures
		if ok {
			need = pr.successes
		}
		if (!known || ok != healthy) && streak >= need {
			healthy, known = ok, true
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			report(healthy, msg)
		}
	}
}

// once runs the probe one time.
func (pr *prober) once(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pr.timeout)
	defer cancel()
	switch m := pr.spec.GetHealthCheckMethod().(type) {
	case *networkingapi.ReadinessProbe_HttpGet:
		return pr.httpGet(ctx, m.HttpGet)
	case *networkingapi.ReadinessProbe_TcpSocket:
		addr := net.JoinHostPort(firstSet(m.TcpSocket.GetHost(), pr.host), strconv.Itoa(int(m.TcpSocket.GetPort())))
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcpSocket probe %s: %w", addr, err)
		}
		return c.Close()
	case *networkingapi.ReadinessProbe_Exec:
		return execProbe(ctx, m.Exec.GetCommand())
	}
	return fmt.Errorf("the probe has no method this agent runs (httpGet, tcpSocket or exec)")
}

func (pr *prober) httpGet(ctx context.Context, h *networkingapi.HTTPHealthCheckConfig) error {
	scheme := "http"
	if h.GetScheme() == "HTTPS" || h.GetScheme() == "https" {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(firstSet(h.GetHost(), pr.host), strconv.Itoa(int(h.GetPort()))) + h.GetPath()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("httpGet probe %s: %w", url, err)
	}
	for _, hd := range h.GetHttpHeaders() {
		req.Header.Set(hd.GetName(), hd.GetValue())
	}
	req.Header.Set("User-Agent", "controlplane-agent-probe")
	resp, err := pr.client.Do(req)
	if err != nil {
		return fmt.Errorf("httpGet probe %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("httpGet probe %s: status %d", url, resp.StatusCode)
	}
	return nil
}

func execProbe(ctx context.Context, command []string) error {
	if len(command) == 0 {
		return fmt.Errorf("exec probe: no command")
	}
	out, err := exec.CommandContext(ctx, command[0], command[1:]...).CombinedOutput()
	if err != nil {
		if len(out) > 200 {
			out = out[:200]
		}
		return fmt.Errorf("exec probe %q: %w: %s", command[0], err, out)
	}
	return nil
}
