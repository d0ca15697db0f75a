package hook_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// lockedWhoamiPolicy is lockedPolicy changed while the engine is down.
var lockedWhoamiPolicy = strings.Replace(lockedPolicy, "deny: [/bin/id]", "deny: [/bin/id, /usr/bin/whoami]", 1)

// offlineHooks are hook entries that register without the engine when it
// cannot be reached, into e's state and pins.
func offlineHooks(bin, stage string, e *harness.Engine, logPath string, extra ...string) map[string][]runcHook {
	return hookEntries(bin, stage, e.Socket, logPath, append([]string{
		"--state-dir", e.StateDir, "--bpf-dir", e.BPFDir, "--holdfast-binary", e.Bin}, extra...)...)
}

// TestRuncEnforcedWhileEngineDown stops the engine, then runs containers
// through the hook: each is registered by the hook itself and enforced
// from its first instruction. The engine started afterwards adopts them
// with their identity, applies the policy changed meanwhile, and forgets
// the one removed meanwhile.
func TestRuncEnforcedWhileEngineDown(t *testing.T) {
	// createContainer runs the hook in the container's cgroup (the slow
	// path's process witnesses the claim); createRuntime names its pid.
	for _, stage := range []string{"createContainer", "createRuntime"} {
		t.Run(stage, func(t *testing.T) { enforcedWhileEngineDown(t, stage) })
	}
}

func enforcedWhileEngineDown(t *testing.T, stage string) {
	r := newRuncEnv(t, "/usr/bin/whoami")
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	logPath := filepath.Join(t.TempDir(), "hook.log")
	hooks := offlineHooks(bin, stage, e, logPath, "--fail-mode", "closed")
	e.Terminate(t)

	denied := r.bundle(t, bundleOpts{Args: []string{"/bin/id"}, Annotations: lockedAnnotations("offline-denied"), Hooks: hooks})
	if res := denied.run(t); !res.killed() || res.Stdout != "" {
		t.Errorf("denied /bin/id as the command of a container started while the engine is down: want SIGKILL before any output, got %v", res)
	}
	reg := decision(t, logPath, denied.ID, "registered-offline")
	if pol, _ := reg["policies"].([]any); len(pol) != 1 || pol[0] != "locked" {
		t.Errorf("offline registration of %s: policies %v, want [locked]", denied.ID, reg["policies"])
	}
	if why, _ := reg["reason"].(string); !strings.Contains(why, "connect to engine") {
		t.Errorf("offline registration of %s does not say why the engine was not used: %v", denied.ID, reg)
	}
	decision(t, logPath, denied.ID, "unregistered-offline")

	sleeper := r.bundle(t, bundleOpts{Args: []string{"/bin/sleep", "600"}, Annotations: lockedAnnotations("offline-sleeper"), Hooks: hooks})
	sleeper.runc(t, "create", "--bundle", sleeper.Bundle, sleeper.ID)
	sleeper.runc(t, "start", sleeper.ID)
	sleeperCgroup := uint64(decision(t, logPath, sleeper.ID, "registered-offline")["cgroupId"].(float64))
	if !cgroupMapped(t, e, sleeperCgroup) {
		t.Fatalf("cgroup %d of %s is not in the pinned map", sleeperCgroup, sleeper.ID)
	}
	if code := sleeper.exec(t, "/bin/id"); code != 128+int(syscall.SIGKILL) {
		t.Errorf("/bin/id in %s while the engine is down: exit %d, want SIGKILL", sleeper.ID, code)
	}
	if code := sleeper.exec(t, "/usr/bin/whoami"); code != 0 {
		t.Errorf("/usr/bin/whoami in %s before the policy changes: exit %d, want 0", sleeper.ID, code)
	}

	gone := r.bundle(t, bundleOpts{Args: []string{"/bin/sleep", "600"}, Annotations: lockedAnnotations("offline-gone"), Hooks: hooks})
	gone.runc(t, "create", "--bundle", gone.Bundle, gone.ID)
	goneCgroup := uint64(decision(t, logPath, gone.ID, "registered-offline")["cgroupId"].(float64))
	gone.runc(t, "delete", "--force", gone.ID)
	decision(t, logPath, gone.ID, "unregistered-offline")
	if cgroupMapped(t, e, goneCgroup) {
		t.Errorf("cgroup %d of %s, removed while the engine is down, is still in the pinned map", goneCgroup, gone.ID)
	}

	e.WritePolicy(t, "locked.yaml", lockedWhoamiPolicy)
	e.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := e.Client().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got *api.Container
	for i, c := range list {
		switch c.ID {
		case sleeper.ID:
			got = &list[i]
		case gone.ID, denied.ID:
			t.Errorf("engine lists %s, removed while it was down", c.ID)
		}
	}
	if got == nil {
		t.Fatalf("engine does not list %s, registered while it was down; list: %+v", sleeper.ID, list)
	}
	if got.Namespace != "hooktest" || got.Pod != "offline-sleeper" || got.Labels["app"] != "locked" || got.Name != "main" ||
		got.Source != "oci-hook" || got.CgroupID != sleeperCgroup || !slices.Equal(got.Policies, []string{"locked"}) {
		t.Errorf("engine's record of %s: %+v", sleeper.ID, got)
	}
	if code := sleeper.exec(t, "/bin/id"); code != 128+int(syscall.SIGKILL) {
		t.Errorf("/bin/id in %s after the engine is back: exit %d, want SIGKILL", sleeper.ID, code)
	}
	if code := sleeper.exec(t, "/usr/bin/whoami"); code != 128+int(syscall.SIGKILL) {
		t.Errorf("/usr/bin/whoami in %s, denied by the policy changed while the engine was down: exit %d, want SIGKILL", sleeper.ID, code)
	}
	killedEvent(t, e, sleeper.ID, "/usr/bin/whoami")
	e.CheckJournal(t)

	// The engine's own unregistration of an adopted container works.
	sleeper.runc(t, "delete", "--force", sleeper.ID)
	decision(t, logPath, sleeper.ID, "unregistered")
	expectForgotten(t, e, sleeper.ID, sleeperCgroup)
}

// TestRuncEngineHung stops the engine with SIGSTOP: it holds the state-dir
// lock and never answers, so the hook can neither register through it nor
// without it, and its deadline and fail mode decide.
func TestRuncEngineHung(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	resume := e.Hang(t)

	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			c := r.bundle(t, bundleOpts{Args: []string{"/bin/echo", "started"}, Annotations: lockedAnnotations("hung-" + mode),
				Hooks: offlineHooks(bin, "createRuntime", e, logPath, "--fail-mode", mode, "--timeout", "1s")})
			res := c.run(t)
			if strings.Contains(res.Stderr, "ran past specified timeout") {
				t.Errorf("runc had to kill the hook: %s", res.Stderr)
			}
			var first map[string]any
			if d := hookLog(t, logPath); len(d) > 0 {
				first = d[0]
			}
			logErr, _ := first["error"].(string)
			for _, want := range []string{"no answer from the engine", "state-dir lock", "locked by another process"} {
				if !strings.Contains(logErr, want) {
					t.Errorf("logged error %q does not mention %q", logErr, want)
				}
			}
			if mode == "closed" {
				if res.ExitCode == 0 || res.Stdout != "" || !strings.Contains(res.Stderr, "refusing container "+c.ID) {
					t.Errorf("want runc to refuse the container, got %v", res)
				}
				if first["outcome"] != "fail-closed" {
					t.Errorf("log line %v, want fail-closed", first)
				}
				return
			}
			if res.ExitCode != 0 || res.Stdout != "started\n" {
				t.Errorf("want the container to start (fail open), got %v", res)
			}
			if first["outcome"] != "fail-open" {
				t.Errorf("log line %v, want fail-open", first)
			}
		})
	}
	resume()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.Client().Status(ctx); err != nil {
		t.Fatalf("engine after SIGCONT: %v", err)
	}
	e.CheckJournal(t)
}

// TestEngineDownInstalledHook: the hook as holdfast install crio installs it
// (its settings in the config file next to it) hands a run the engine
// cannot take to a holdfast binary installed elsewhere, which must read
// the same config file: the state dir, the fail mode and the log are
// there, not in the hook's arguments.
func TestEngineDownInstalledHook(t *testing.T) {
	r := newRuncEnv(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	logPath := filepath.Join(t.TempDir(), "hook.log")
	hooks := installedHooks(t, hookBinary(t), hookconfig.Config{Socket: e.Socket, Log: logPath,
		StateDir: e.StateDir, BPFDir: e.BPFDir, HoldfastBinary: e.Bin,
		Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	e.Terminate(t)

	denied := r.bundle(t, bundleOpts{Args: []string{"/bin/id"}, Annotations: lockedAnnotations("installed-denied"), Hooks: hooks})
	if res := denied.run(t); !res.killed() || res.Stdout != "" {
		t.Errorf("denied /bin/id as the command of a container started while the engine is down: want SIGKILL before any output, got %v", res)
	}
	decision(t, logPath, denied.ID, "registered-offline")
	decision(t, logPath, denied.ID, "unregistered-offline")
}
