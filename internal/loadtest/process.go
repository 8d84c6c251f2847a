package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a server under test, running as its own process.
type process struct {
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	done               chan struct{}
	// started is the exec; startup is exec to the first /readyz 200.
	started time.Time
	startup time.Duration

	mu   sync.Mutex
	tail []string // last log lines, for errors
}

var servingLine = regexp.MustCompile(`msg="serving (gRPC|HTTP)" addr=(\S+)`)

// launch says how a server process is started.
type launch struct {
	// cpu, when 0 or more, pins the process to that CPU with GOMAXPROCS=1
	// (see pin.go); -1 leaves it unpinned.
	cpu int
	env []string // added to the load client's environment
	dir string   // working folder ("": the load client's)
}

// unpinned is how a server starts outside a pinned run.
var unpinned = launch{cpu: -1}

// startProcess runs bin with args, logging to logPath, and waits until it
// serves gRPC and HTTP and /readyz answers 200.
func startProcess(ctx context.Context, bin string, args []string, logPath string, l launch) (*process, error) {
	p, addrs, err := spawn(bin, args, logPath, l)
	if err != nil {
		return nil, err
	}
	if err := p.waitServing(ctx, addrs); err != nil {
		p.stop()
		return nil, err
	}
	p.startup = time.Since(p.started)
	return p, nil
}

// spawn starts bin with args, its stderr (and stdout) going to logPath,
// and returns the addresses it logs serving on.
func spawn(bin string, args []string, logPath string, l launch) (*process, <-chan [2]string, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, fmt.Errorf("server log: %w", err)
	}
	p := &process{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	// The server dies with the load test, even when it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Dir = l.dir
	if len(l.env) > 0 || l.cpu >= 0 {
		p.cmd.Env = append(os.Environ(), l.env...)
		if l.cpu >= 0 {
			p.cmd.Env = append(p.cmd.Env, "GOMAXPROCS=1")
		}
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, nil, err
	}
	p.cmd.Stdout = p.cmd.Stderr // one pipe: istiod logs to stdout
	p.started = time.Now()
	if err := startOn(p.cmd, l.cpu); err != nil {
		logFile.Close()
		return nil, nil, fmt.Errorf("start %s: %w", bin, err)
	}
	addrs := make(chan [2]string, 4)
	go p.read(stderr, logFile, addrs)
	return p, addrs, nil
}

func (p *process) read(r io.Reader, log *os.File, addrs chan<- [2]string) {
	defer close(p.done)
	defer log.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > 20 {
			p.tail = p.tail[1:]
		}
		p.mu.Unlock()
		if m := servingLine.FindStringSubmatch(line); m != nil {
			select {
			case addrs <- [2]string{m[1], m[2]}:
			default: // a server that logs no such lines is waited for otherwise
			}
		}
	}
	_ = p.cmd.Wait()
}

func (p *process) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

func (p *process) waitServing(ctx context.Context, addrs <-chan [2]string) error {
	timeout := time.After(2 * time.Minute)
	for p.grpcAddr == "" || p.httpAddr == "" {
		select {
		case a := <-addrs:
			if a[0] == "gRPC" {
				p.grpcAddr = a[1]
			} else {
				p.httpAddr = a[1]
			}
		case <-p.done:
			return fmt.Errorf("server exited before serving:\n%s", p.logTail())
		case <-timeout:
			return fmt.Errorf("server did not serve within 2m:\n%s", p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.waitReady(ctx, "http://"+p.httpAddr+"/readyz")
}

// waitReady waits until url answers 200, polling every 5 ms (the cold
// start is timed to it).
func (p *process) waitReady(ctx context.Context, url string) error {
	timeout := time.After(2 * time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("server exited before ready:\n%s", p.logTail())
		case <-timeout:
			return fmt.Errorf("server not ready within 2m:\n%s", p.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop interrupts the server and waits for it.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// rssParts reads the server's resident set size and its anonymous part
// (heap, stacks: what the server allocated; the rest is mostly the
// binary's pages, shared and evictable) from /proc.
func (p *process) rssParts() (rss, anon float64, err error) {
	v, err := p.status("VmRSS:", "RssAnon:")
	if err != nil {
		return 0, 0, fmt.Errorf("read RSS: %w", err)
	}
	return v[0], v[1], nil
}

// peakRSS reads the most the server has held resident so far (VmHWM).
func (p *process) peakRSS() (float64, error) {
	v, err := p.status("VmHWM:")
	if err != nil {
		return 0, fmt.Errorf("read peak RSS: %w", err)
	}
	return v[0], nil
}

// status reads the server's /proc status fields named (each in kB), in
// bytes.
func (p *process) status(names ...string) ([]float64, error) {
	return procFields(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid), names...)
}

// procFields reads the fields named (each "Name: N kB") of a /proc file
// such as /proc/PID/status or /proc/meminfo, in bytes.
func procFields(path string, names ...string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(names))
	var found int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		i := slices.Index(names, f[0])
		if i < 0 {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f[0], err)
		}
		out[i] = kb * 1024
		found++
	}
	if found != len(names) {
		return nil, fmt.Errorf("not every one of %v in %s", names, path)
	}
	return out, nil
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// cpuSeconds reads the server's user and system CPU time from /proc.
func (p *process) cpuSeconds() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", p.cmd.Process.Pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", p.cmd.Process.Pid)
	}
	return (utime + stime) / clockTicks, nil
}

// metric reads one unlabelled sample from /metrics.
func (p *process) metric(name string) (float64, error) {
	v, n, err := p.sumMetric(func(sample string) bool { return sample == name })
	if err == nil && n == 0 {
		err = fmt.Errorf("/metrics has no %s", name)
	}
	return v, err
}

// connectedProxies sums our server's controlplane_xds_connected_proxies
// gauge (by kind); an error when the server has no such gauge.
func (p *process) connectedProxies() (float64, error) {
	const gauge = "controlplane_xds_connected_proxies"
	v, n, err := p.sumMetric(func(sample string) bool { return sample == gauge || strings.HasPrefix(sample, gauge+"{") })
	if err == nil && n == 0 {
		err = fmt.Errorf("/metrics has no %s", gauge)
	}
	return v, err
}

// sumMetric sums the /metrics samples whose name (with labels) match
// wants, and counts them.
func (p *process) sumMetric(wants func(sample string) bool) (sum float64, n int, err error) {
	resp, err := http.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		return 0, 0, fmt.Errorf("get /metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || !wants(f[0]) {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", f[0], err)
		}
		sum, n = sum+v, n+1
	}
	return sum, n, sc.Err()
}

// metricsText returns the /metrics lines that start with prefix, for
// error messages.
func (p *process) metricsText(prefix string) string {
	resp, err := http.Get("http://" + p.httpAddr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) && !strings.Contains(sc.Text(), "_bucket") {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}

// saveProfile saves /debug/pprof/WHAT to path.
func (p *process) saveProfile(what, path string) error {
	resp, err := http.Get("http://" + p.httpAddr + "/debug/pprof/" + what)
	if err != nil {
		return fmt.Errorf("get profile: %w", err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save profile: %w", err)
	}
	return f.Close()
}
