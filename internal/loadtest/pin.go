package loadtest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinned runs (-pin, the default next to istiod) give each server under
// test one core and the load client the other, so a server's figures are
// one core's work and the client cannot take that core from it: servers
// run on ServerCPU with GOMAXPROCS=1, the load client (and the etcd and
// kube-apiserver it starts for istiod) on ClientCPU.
const (
	ServerCPU = 0
	ClientCPU = 1
)

// PinSelf binds every thread of the load client to cpu (threads it
// creates later inherit it) and sets GOMAXPROCS to 1.
func PinSelf(cpu int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("pin the load client: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pin the load client's thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// startOn starts cmd bound to cpu (unbound when cpu is negative). The
// child inherits the affinity of the thread that forks it, so that thread
// is locked and bound to cpu for the fork, then given its mask back.
func startOn(cmd *exec.Cmd, cpu int) error {
	if cpu < 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("read CPU affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("bind to CPU %d: %w", cpu, err)
	}
	err := cmd.Start()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
		err = fmt.Errorf("restore CPU affinity: %w", rerr)
	}
	return err
}

// cpusAllowed is the Cpus_allowed_list of pid, for the progress log.
func cpusAllowed(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
