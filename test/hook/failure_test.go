package hook_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// TestEngineDown runs containers whose hook cannot get an answer from the
// engine: none listening, or one that accepts and never replies. No engine
// ever ran on the state dir they name, so registering without the engine
// fails too and the fail mode decides.
func TestEngineDown(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	absent := filepath.Join(t.TempDir(), "no-engine.sock")
	silent := harness.SilentSocket(t)
	noState := filepath.Join(t.TempDir(), "no-engine-state")
	holdfast := harness.Build(t, "./engine/cmd/holdfast")

	tests := []struct {
		name      string
		socket    string
		failMode  string
		namespace string
		timeout   string // the hook's deadline; runc's own hook timeout stays 30s
		starts    bool
		logErr    string
	}{
		{name: "no engine, fail open", socket: absent, failMode: "open", starts: true, logErr: "connect to engine"},
		{name: "no engine, fail closed", socket: absent, failMode: "closed", logErr: "connect to engine"},
		{name: "no engine, fail closed, engine's namespace", socket: absent, failMode: "closed", namespace: "holdfast-system", starts: true, logErr: "connect to engine"},
		{name: "no engine, fail closed, listed namespace", socket: absent, failMode: "closed", namespace: "kube-system", starts: true, logErr: "connect to engine"},
		{name: "silent engine, fail open", socket: silent, failMode: "open", timeout: "500ms", starts: true, logErr: "no answer from the engine within 250ms (its share of the hook's 500ms deadline)"},
		{name: "silent engine, fail closed", socket: silent, failMode: "closed", timeout: "500ms", logErr: "no answer from the engine within 250ms (its share of the hook's 500ms deadline)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			extra := []string{"--fail-mode", tt.failMode, "--fail-open-namespaces", "kube-system", "--state-dir", noState, "--holdfast-binary", holdfast}
			if tt.timeout != "" {
				extra = append(extra, "--timeout", tt.timeout)
			}
			c := r.bundle(t, bundleOpts{
				Args:        []string{"/bin/echo", "started"},
				Annotations: map[string]string{"io.kubernetes.pod.namespace": tt.namespace},
				Hooks:       hookEntries(bin, "createContainer", tt.socket, logPath, extra...),
			})
			res := c.run(t)
			d := hookLog(t, logPath)
			if len(d) == 0 {
				t.Fatalf("hook logged nothing; runc: %v", res)
			}
			first := d[0]
			if err, _ := first["error"].(string); !strings.Contains(err, tt.logErr) || !strings.Contains(err, "engine state dir") {
				t.Errorf("logged error %q, want it to mention %q and the missing engine state dir", err, tt.logErr)
			}
			// The hook's deadline ended the wait, not runc killing the hook.
			if strings.Contains(res.Stderr, "ran past specified timeout") {
				t.Errorf("runc had to kill the hook: %s", res.Stderr)
			}
			if tt.starts {
				if res.ExitCode != 0 || res.Stdout != "started\n" {
					t.Fatalf("want the container to start (fail open), got %v", res)
				}
				if first["outcome"] != "fail-open" || first["id"] != c.ID {
					t.Errorf("log line %v, want a fail-open decision for %s", first, c.ID)
				}
				return
			}
			if res.ExitCode == 0 || res.Stdout != "" {
				t.Fatalf("want runc to refuse the container (fail closed), got %v", res)
			}
			want := "holdfast-oci-hook: refusing container " + c.ID
			if !strings.Contains(res.Stderr, want) || !strings.Contains(res.Stderr, tt.logErr) {
				t.Errorf("runc's error does not carry the hook's reason (%q, %q): %s", want, tt.logErr, res.Stderr)
			}
			if first["outcome"] != "fail-closed" {
				t.Errorf("log line %v, want fail-closed", first)
			}
		})
	}
}

// hookRun is one run of the hook binary outside any runtime.
type hookRun struct {
	exitCode int
	stderr   string
}

// runHook runs the hook binary with stdin; a minute bounds the test, the
// hook's own deadline is what the assertions are about.
func runHook(t *testing.T, bin string, stdin io.Reader, args ...string) hookRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("hook did not exit within a minute: %s", stderr.String())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run hook: %v", err)
	}
	return hookRun{exitCode: cmd.ProcessState.ExitCode(), stderr: stderr.String()}
}

// TestBadInput feeds the real hook binary broken input. Each run must end
// with exit status 1 (fail closed) and one stderr line naming the problem.
func TestBadInput(t *testing.T) {
	bin := hookBinary(t)
	sock := filepath.Join(t.TempDir(), "unused.sock")
	good := harness.OCIBundle(t, nil, "")
	dead := harness.ExitedPID(t)

	tests := []struct {
		name   string
		stage  string
		stdin  io.Reader
		extra  []string
		errHas []string
	}{
		{"empty stdin", "createContainer", strings.NewReader(""), nil, []string{"empty OCI state on stdin"}},
		{"malformed stdin", "createContainer", strings.NewReader(`{"id":"c1","status":`), nil, []string{"malformed OCI state JSON"}},
		{"not a state", "createRuntime", strings.NewReader(`[1,2,3]`), nil, []string{"malformed OCI state JSON"}},
		{"no id", "createRuntime", strings.NewReader(`{"status":"creating"}`), nil, []string{"container id is empty"}},
		{"missing config.json", "createRuntime", strings.NewReader(harness.OCIState("c1", "creating", os.Getpid(), t.TempDir(), nil)), nil, []string{"config.json", "no such file"}},
		{"pid gone", "createRuntime", strings.NewReader(harness.OCIState("c1", "creating", dead, good, nil)), nil, []string{fmt.Sprintf("/proc/%d/cgroup", dead), "process does not exist"}},
		{"unknown cgroup", "createRuntime", strings.NewReader(harness.OCIState("c1", "creating", dead, harness.OCIBundle(t, nil, "/holdfast-no-such-cgroup"), nil)), nil, []string{"unknown cgroup", "/holdfast-no-such-cgroup"}},
		{"stdin never closes", "createContainer", blockingReader(t), []string{"--timeout", "300ms"}, []string{"read OCI state: not done before the hook's deadline"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			args := append([]string{"--stage", tt.stage, "--socket", sock, "--fail-mode", "closed", "--log", logPath}, tt.extra...)
			got := runHook(t, bin, tt.stdin, args...)
			if got.exitCode != 1 {
				t.Fatalf("exit %d, want 1 (fail closed); stderr %q", got.exitCode, got.stderr)
			}
			if strings.Count(got.stderr, "\n") != 1 || !strings.HasPrefix(got.stderr, "holdfast-oci-hook: refusing container") {
				t.Errorf("stderr %q, want one line saying why", got.stderr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(got.stderr, s) {
					t.Errorf("stderr %q does not mention %q", got.stderr, s)
				}
			}
			if lines := hookLog(t, logPath); len(lines) != 1 || lines[0]["outcome"] != "fail-closed" {
				t.Errorf("hook log %v, want one fail-closed line", lines)
			}
		})
	}
}

// sleeperInCgroup starts a process born in a fresh cgroup, standing in for
// a container's init at createRuntime.
func sleeperInCgroup(t *testing.T) int {
	t.Helper()
	cg := harness.NewCgroup(t)
	fd, err := os.Open(cg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// blockingReader is a stdin whose writer stays open until the test ends.
func blockingReader(t *testing.T) io.Reader {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); r.Close() })
	return r
}

// TestConfigFileNextToBinary checks that holdfast-oci-hook.json beside the
// binary configures it, that flags override it, and that a broken config or
// command line is refused with one line.
func TestConfigFileNextToBinary(t *testing.T) {
	src := hookBinary(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "holdfast-oci-hook")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "hook.log")
	cfg := fmt.Sprintf(`{"socket":%q,"failMode":"closed","log":%q}`, filepath.Join(dir, "absent.sock"), logPath)
	if err := os.WriteFile(filepath.Join(dir, "holdfast-oci-hook.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	state := harness.OCIState("c-cfg", "creating", sleeperInCgroup(t), harness.OCIBundle(t, nil, ""), nil)

	got := runHook(t, bin, strings.NewReader(state), "--stage", "createRuntime")
	if got.exitCode != 1 || !strings.Contains(got.stderr, "absent.sock") {
		t.Fatalf("config file's closed mode and socket not applied: exit %d stderr %q", got.exitCode, got.stderr)
	}
	got = runHook(t, bin, strings.NewReader(state), "--stage", "createRuntime", "--fail-mode", "open")
	if got.exitCode != 0 || got.stderr != "" {
		t.Fatalf("--fail-mode open did not override the file: exit %d stderr %q", got.exitCode, got.stderr)
	}
	lines := hookLog(t, logPath)
	if len(lines) != 2 || lines[0]["outcome"] != "fail-closed" || lines[1]["outcome"] != "fail-open" {
		t.Fatalf("log file from the config: %v", lines)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		config string
		errHas string
	}{
		{"no stage", nil, cfg, `--stage: unknown stage ""`},
		{"bad stage", []string{"--stage", "prestart"}, cfg, `unknown stage "prestart"`},
		{"bad fail mode flag", []string{"--stage", "poststop", "--fail-mode", "ajar"}, cfg, `unknown fail mode "ajar"`},
		{"misspelt config field", []string{"--stage", "poststop"}, `{"failureMode":"closed"}`, `unknown field "failureMode"`},
		{"malformed config", []string{"--stage", "poststop"}, `{"socket":`, "malformed JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "holdfast-oci-hook.json"), []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			got := runHook(t, bin, strings.NewReader(state), tc.args...)
			if got.exitCode != 2 || strings.Count(got.stderr, "\n") != 1 || !strings.Contains(got.stderr, tc.errHas) {
				t.Fatalf("exit %d stderr %q, want exit 2 and one line with %q", got.exitCode, got.stderr, tc.errHas)
			}
		})
	}
}

// TestEngineCannotEnforce fills the engine's cgroup map, then starts a
// selected container under runc with the hook in fail-open mode: the engine
// answers that it cannot enforce, and that is refused, not failed open.
func TestEngineCannotEnforce(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"locked.yaml": lockedPolicy},
		Args:     []string{"--max-cgroups", "1"},
	})
	filler := harness.NewCgroup(t)
	if out, err := e.CLI("containers", "add", "--id", "filler", "--cgroup-path", filler.Dir, "--label", "app=locked"); err != nil {
		t.Fatalf("fill the map: %v\n%s", err, out)
	}
	logPath := filepath.Join(t.TempDir(), "hook.log")
	hooks := hookEntries(bin, "createContainer", e.Socket, logPath, "--fail-mode", "open")

	c := r.bundle(t, bundleOpts{Args: []string{"/bin/echo", "started"}, Annotations: lockedAnnotations("full"), Hooks: hooks})
	res := c.run(t)
	if res.ExitCode == 0 || strings.Contains(res.Stdout, "started") {
		t.Fatalf("selected container with a full map in fail-open mode: want runc to refuse it, got %v", res)
	}
	d := decision(t, logPath, c.ID, "fail-closed")
	if err, _ := d["error"].(string); !strings.Contains(err, "cgroup_rules") || !strings.Contains(err, "capacity of 1") {
		t.Errorf("logged error %q, want the full map named", err)
	}

	// A container no policy selects needs no map entry and starts.
	free := r.bundle(t, bundleOpts{Args: []string{"/bin/echo", "started"}, Hooks: hooks})
	if res := free.run(t); res.ExitCode != 0 || res.Stdout != "started\n" {
		t.Errorf("unselected container: %v", res)
	}
}
