package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/test/require"
)

// Cgroup is a cgroup v2 directory a test created.
type Cgroup struct {
	Dir  string
	Path string // v2 path below the cgroup root, as linux.cgroupsPath names it: "/holdfast-test-..."
	ID   uint64
}

// CgroupMount is the detected cgroup v2 mount; the test needs root and
// skips, with the reason, where there is no cgroup v2.
func CgroupMount(t testing.TB) cgroup.Mount {
	t.Helper()
	require.Root(t)
	m, err := cgroup.Detect()
	if err != nil {
		require.Privileged(t, "cgroup v2", err)
	}
	return m
}

// NewCgroup creates an empty cgroup v2 directory under the detected root and
// removes it (killing anything left inside) when the test ends.
func NewCgroup(t testing.TB) Cgroup {
	t.Helper()
	m := CgroupMount(t)
	dir, err := os.MkdirTemp(m.Root, "holdfast-test-")
	if err != nil {
		require.Privileged(t, "cgroup v2 create", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Cgroup{Dir: dir, Path: "/" + filepath.Base(dir), ID: id}
}

// Child creates the sub-cgroup name of cg, removed (before cg) when the
// test ends.
func (cg Cgroup) Child(t testing.TB, name string) Cgroup {
	t.Helper()
	dir := filepath.Join(cg.Dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create sub-cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Cgroup{Dir: dir, Path: cg.Path + "/" + name, ID: id}
}

func removeCgroup(t testing.TB, dir string) {
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Result is how a command run in a cgroup ended.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
	Signal         syscall.Signal // set when the process was killed by a signal
	Err            error          // start failure
}

// Killed reports whether the process died of SIGKILL.
func (r Result) Killed() bool { return r.Signal == syscall.SIGKILL }

func (r Result) String() string {
	return fmt.Sprintf("exit=%d signal=%v err=%v stdout=%q stderr=%q", r.ExitCode, r.Signal, r.Err, r.Stdout, r.Stderr)
}

// Run starts name with args directly inside cg (clone into the cgroup, so
// the very first instruction already runs there) and waits up to 30s.
func (cg Cgroup) Run(t testing.TB, name string, args ...string) Result {
	t.Helper()
	return cg.RunCmd(t, exec.Command(name, args...))
}

// RunCmd runs a prepared command inside cg.
func (cg Cgroup) RunCmd(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	fd := cg.cloneInto(t, cmd)
	defer fd.Close()
	return runCmd(cmd)
}

// Start starts name with args directly inside cg and leaves it running,
// standing in for a container's init. Cleanup kills and reaps it; it runs
// before NewCgroup's (cleanups run last-registered first), so the cgroup is
// removed only after its process is gone.
func (cg Cgroup) Start(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	fd := cg.cloneInto(t, cmd)
	defer fd.Close()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in cgroup %s: %v", name, cg.Dir, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// cloneInto makes cmd start inside cg. The returned directory fd must stay
// open until cmd has started.
func (cg Cgroup) cloneInto(t testing.TB, cmd *exec.Cmd) *os.File {
	t.Helper()
	fd, err := os.Open(cg.Dir)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", cg.Dir, err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(fd.Fd())
	return fd
}

// RunOutside runs a command in the test's own cgroup, for comparison.
func RunOutside(name string, args ...string) Result {
	return runCmd(exec.Command(name, args...))
}

func runCmd(cmd *exec.Cmd) Result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return Result{Err: err, ExitCode: -1}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return Result{Err: errors.New("timed out after 30s"), ExitCode: -1, Stdout: stdout.String(), Stderr: stderr.String()}
	}
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		r.Signal = ws.Signal()
		r.ExitCode = -1
	} else {
		r.ExitCode = ws.ExitStatus()
	}
	return r
}

// ExitedPID returns the pid of a process that has exited and been reaped:
// a pid that names nothing (until the kernel reuses it).
func ExitedPID(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}
