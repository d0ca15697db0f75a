// Package harness runs the real holdfast binaries for end-to-end tests: it
// builds them once per test process, starts an engine on its own bpffs
// instance, state dir and socket, and tears all of it down after the test.
package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/require"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Main runs the tests of a package that uses Build and removes the built
// binaries afterwards. Use it from TestMain: os.Exit(harness.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

// Build compiles a main package (e.g. "./engine/cmd/holdfast") once per test
// process and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[pkg]; ok {
		return bin
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "holdfast-bin-")
		if err != nil {
			t.Fatalf("build %s: %v", pkg, err)
		}
		buildDir = dir
	}
	bin := filepath.Join(buildDir, filepath.Base(pkg))
	// Static, like `make build`: what the tests run is what ships.
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	built[pkg] = bin
	return bin
}

// Options for StartEngine.
type Options struct {
	// Policies are written into the policy dir: file name → YAML.
	Policies map[string]string
	// Args are extra engine flags.
	Args []string
	// Prepare runs before the engine first starts (e.g. to mount a small
	// filesystem on StateDir); its own cleanups run after the engine's stop.
	Prepare func(e *Engine)
}

// Engine is a running holdfast engine owned by one test.
type Engine struct {
	Bin, Socket, StateDir, BPFDir, PolicyDir, EventsFile, LogFile string

	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartEngine starts an engine on a fresh bpffs instance and waits until
// its socket answers. Cleanup stops it, uninstalls its pins and unmounts.
func StartEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	require.Root(t)
	dir, err := os.MkdirTemp("", "holdfast-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{
		Bin:        Build(t, "./engine/cmd/holdfast"),
		Socket:     filepath.Join(dir, "engine.sock"),
		StateDir:   filepath.Join(dir, "state"),
		BPFDir:     filepath.Join(dir, "bpffs", "holdfast"),
		PolicyDir:  filepath.Join(dir, "policies"),
		EventsFile: filepath.Join(dir, "events.jsonl"),
		LogFile:    filepath.Join(dir, "engine.log"),
		args:       opts.Args,
	}
	bpffs := filepath.Dir(e.BPFDir)
	for _, d := range []string{bpffs, e.PolicyDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := linux.MountBPFFS(bpffs); err != nil {
		require.Privileged(t, "bpffs mount", err)
	}
	t.Cleanup(func() {
		e.stop()
		out, err := exec.Command(e.Bin, "uninstall", "--bpf-dir", e.BPFDir, "--state-dir", e.StateDir, "--socket", e.Socket).CombinedOutput()
		if err != nil {
			t.Errorf("uninstall engine pins: %v\n%s", err, out)
		}
		linux.Unmount(bpffs)
		if t.Failed() {
			if log, err := os.ReadFile(e.LogFile); err == nil {
				t.Logf("engine log:\n%s", log)
			}
		}
		os.RemoveAll(dir)
	})
	for name, yaml := range opts.Policies {
		e.WritePolicy(t, name, yaml)
	}
	if opts.Prepare != nil {
		opts.Prepare(e)
	}
	e.Start(t)
	return e
}

// WritePolicy writes (or replaces) one policy file.
func (e *Engine) WritePolicy(t testing.TB, name, yaml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.PolicyDir, name), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Start runs the engine process (again) and waits for its socket.
func (e *Engine) Start(t testing.TB) {
	t.Helper()
	e.Launch(t)
	e.waitReady(t)
}

// Launch runs the engine process (again) without waiting for it.
func (e *Engine) Launch(t testing.TB) {
	t.Helper()
	if e.cmd != nil {
		t.Fatal("engine already running")
	}
	logf, err := os.OpenFile(e.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"engine",
		"--policies", e.PolicyDir, "--state-dir", e.StateDir, "--bpf-dir", e.BPFDir,
		"--socket", e.Socket, "--events", e.EventsFile, "--log-level", "debug"}, e.args...)
	// A test engine reconciles only with a CRI runtime it is pointed at,
	// never with one that happens to run on the machine.
	if !slices.ContainsFunc(e.args, func(a string) bool { return strings.HasPrefix(a, "--cri-endpoint") }) {
		args = append(args, "--cri-endpoint=none")
	}
	cmd := exec.Command(e.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start engine: %v", err)
	}
	e.cmd = cmd
	e.done = make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(e.done) }()
}

func (e *Engine) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := e.Client().Status(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-e.done:
			log, _ := os.ReadFile(e.LogFile)
			e.cmd = nil
			t.Fatalf("engine exited during start-up:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(e.LogFile)
			t.Fatalf("engine socket %s did not answer within 30s: %v\n%s", e.Socket, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running reports whether the engine process is alive.
func (e *Engine) Running() bool { return e.cmd != nil }

// PID of the engine process.
func (e *Engine) PID() int { return e.cmd.Process.Pid }

// Kill9 kills the engine with SIGKILL, the way a crash would end it.
func (e *Engine) Kill9(t testing.TB) {
	t.Helper()
	e.signal(t, syscall.SIGKILL)
}

// Terminate stops the engine with SIGTERM.
func (e *Engine) Terminate(t testing.TB) {
	t.Helper()
	e.signal(t, syscall.SIGTERM)
}

func (e *Engine) signal(t testing.TB, sig syscall.Signal) {
	if e.cmd == nil {
		t.Fatal("engine is not running")
	}
	if err := e.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal engine: %v", err)
	}
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("engine did not exit after %v", sig)
	}
	e.cmd = nil
}

// Hang stops the engine with SIGSTOP: it keeps its socket and state-dir
// lock and answers nothing. The returned func (also a Cleanup) resumes it.
func (e *Engine) Hang(t testing.TB) (resume func()) {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stop engine: %v", err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { e.cmd.Process.Signal(syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}

// Restart kills the engine with SIGKILL and starts it again.
func (e *Engine) Restart(t testing.TB) {
	t.Helper()
	e.Kill9(t)
	e.Start(t)
}

func (e *Engine) stop() {
	if e.cmd == nil {
		return
	}
	StopProcess(e.cmd.Process, e.done, 10*time.Second)
	e.cmd = nil
}

// Client talks to this engine.
func (e *Engine) Client() *api.Client { return &api.Client{Socket: e.Socket} }

// CLI runs the holdfast binary with args (adding --socket where the command
// takes it) and returns its combined output.
func (e *Engine) CLI(args ...string) (string, error) {
	if len(args) > 0 && (args[0] == "status" || args[0] == "containers" || (args[0] == "policy" && len(args) > 1 && args[1] == "reload")) {
		args = append(args, "--socket", e.Socket)
	}
	out, err := exec.Command(e.Bin, args...).CombinedOutput()
	return string(out), err
}

// Events returns every event written so far, rotated files included,
// oldest first.
func (e *Engine) Events(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	rotated, _ := filepath.Glob(e.EventsFile + ".*")
	for i := len(rotated); i >= 1; i-- {
		out = append(out, readEvents(t, fmt.Sprintf("%s.%d", e.EventsFile, i))...)
	}
	return append(out, readEvents(t, e.EventsFile)...)
}

func readEvents(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events file has a bad line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// WaitEvent waits up to 10s for an event that match accepts.
func (e *Engine) WaitEvent(t testing.TB, match func(map[string]any) bool) map[string]any {
	t.Helper()
	ev, _ := e.WaitEventAfter(t, 0, match)
	return ev
}

// WaitEventAfter is WaitEvent over the events after the first skip (as
// counted by Events); it also returns how many events there are up to and
// including the match, the skip of a wait for the next one.
func (e *Engine) WaitEventAfter(t testing.TB, skip int, match func(map[string]any) bool) (map[string]any, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := e.Events(t)
		for i := skip; i < len(all); i++ {
			if match(all[i]) {
				return all[i], i + 1
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching event within 10s; events: %v", e.Events(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// String describes the engine for messages.
func (e *Engine) String() string { return fmt.Sprintf("engine(socket=%s)", e.Socket) }

// CheckJournal checks that every line of the engine's registry journal is
// whole JSON, and that the engine, restarted, reads it without skipping any.
func (e *Engine) CheckJournal(t testing.TB) {
	t.Helper()
	f, err := os.Open(filepath.Join(e.StateDir, "registry", "registry.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), api.MaxMessageSize)
	lines := 0
	for sc.Scan() {
		lines++
		if !json.Valid(sc.Bytes()) {
			t.Errorf("registry journal line %d is not whole JSON: %q", lines, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read registry journal: %v", err)
	}
	if lines == 0 {
		t.Error("registry journal is empty")
	}
	before, _ := os.ReadFile(e.LogFile)
	e.Restart(t)
	after, _ := os.ReadFile(e.LogFile)
	if news := string(after[len(before):]); strings.Contains(news, "registry entries skipped") {
		t.Errorf("restarted engine skipped registry entries:\n%s", news)
	}
}
