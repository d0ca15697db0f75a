package nri_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// plugin is a holdfast-nri process connected to the test containerd as an
// external plugin.
type plugin struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logFile string
}

// startPlugin runs holdfast-nri against engineSocket and waits until
// containerd has registered and synchronised it.
func startPlugin(t testing.TB, c *containerd, engineSocket string, args ...string) *plugin {
	t.Helper()
	args = append([]string{"--socket", c.nriSocket, "--engine-socket", engineSocket, "-v"}, args...)
	return runPlugin(t, harness.Build(t, "./nri-plugin/cmd/holdfast-nri"), args...)
}

// startNoopPlugin connects a plugin that handles StartContainer by doing
// nothing: the cost of NRI itself.
func startNoopPlugin(t testing.TB, c *containerd) *plugin {
	t.Helper()
	return runPlugin(t, harness.Build(t, "./test/nri/noopplugin"), "--socket", c.nriSocket)
}

func runPlugin(t testing.TB, bin string, args ...string) *plugin {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), filepath.Base(bin)+".log")
	logf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start holdfast-nri: %v", err)
	}
	p := &plugin{cmd: cmd, done: make(chan struct{}), logFile: logFile}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("holdfast-nri log:\n%s", p.log())
		}
	})
	p.waitLog(t, "registered with runtime", 1)
	return p
}

func (p *plugin) log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// waitLog waits until the plugin has logged msg at least n times.
func (p *plugin) waitLog(t testing.TB, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(p.log(), msg) < n {
		select {
		case <-p.done:
			t.Fatalf("holdfast-nri exited:\n%s", p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("holdfast-nri did not log %q %d times within 60s:\n%s", msg, n, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *plugin) stop() {
	harness.StopProcess(p.cmd.Process, p.done, 10*time.Second)
}

// registrations lists the engine's registrations by container ID.
func registrations(t testing.TB, socket string) map[string]api.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := (&api.Client{Socket: socket}).List(ctx)
	if err != nil {
		t.Fatalf("list registrations: %v", err)
	}
	out := make(map[string]api.Container, len(list))
	for _, c := range list {
		if _, dup := out[c.ID]; dup {
			t.Errorf("container %s registered twice", c.ID)
		}
		out[c.ID] = c
	}
	return out
}

// waitRegistrations waits until the engine's registrations satisfy ok.
func waitRegistrations(t testing.TB, socket, what string, ok func(map[string]api.Container) bool) map[string]api.Container {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		regs := registrations(t, socket)
		if ok(regs) {
			return regs
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine registrations never reached: %s; have %v", what, regs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
