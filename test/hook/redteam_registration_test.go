package hook_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// TestRedteamHostileBundleRefusedByEngine forwards runs whose bundle or
// state is hostile to a real engine (the fast path: the engine reads
// config.json itself). Each must be refused before the hook's deadline with
// an error naming what was wrong — a config.json FIFO once blocked the
// engine's open for good, then the hook's own, so the refusal only said the
// deadline passed — and the engine must still register a good container
// afterwards.
func TestRedteamHostileBundleRefusedByEngine(t *testing.T) {
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	pid := sleeperInCgroup(t)
	ann := lockedAnnotations("redreg-bundle")

	withConfig := func(make func(path string) error) string {
		dir := harness.OCIBundle(t, ann, "")
		p := filepath.Join(dir, "config.json")
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := make(p); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	fifo := withConfig(func(p string) error { return syscall.Mkfifo(p, 0o600) })
	dir := withConfig(func(p string) error { return os.Mkdir(p, 0o700) })
	huge := withConfig(func(p string) error {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Truncate(17 << 20) // sparse: read as 17 MiB of zeros
	})

	tests := []struct {
		name   string
		state  string
		errHas []string
	}{
		{"config.json is a FIFO", harness.OCIState("redreg-fifo", "creating", pid, fifo, ann), []string{"config.json", "not a regular file"}},
		{"config.json is a directory", harness.OCIState("redreg-dir", "creating", pid, dir, ann), []string{"config.json", "not a regular file"}},
		{"config.json is huge", harness.OCIState("redreg-huge", "creating", pid, huge, ann), []string{"config.json", "larger than"}},
		{"state names the host's init", harness.OCIState("redreg-pid1", "creating", 1, harness.OCIBundle(t, ann, ""), ann), []string{"the root cgroup is not a container's"}},
		{"state is a JSON string", `"creating"`, []string{"malformed OCI state JSON"}},
		{"state is null", `null`, []string{"container id is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			got := runHook(t, bin, strings.NewReader(tt.state), "--stage", "createRuntime", "--socket", e.Socket,
				"--fail-mode", "closed", "--timeout", "3s", "--log", logPath)
			if got.exitCode != 1 {
				t.Fatalf("exit %d, want 1 (fail closed); stderr %q", got.exitCode, got.stderr)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(got.stderr, s) {
					t.Errorf("stderr %q does not name %q", got.stderr, s)
				}
			}
			if strings.Contains(got.stderr, "deadline") {
				t.Errorf("refused only by the deadline, not for what was wrong: %q", got.stderr)
			}
		})
	}

	// The engine still takes a good run at once.
	good := harness.OCIBundle(t, ann, "")
	logPath := filepath.Join(t.TempDir(), "hook.log")
	got := runHook(t, bin, strings.NewReader(harness.OCIState("redreg-good", "creating", pid, good, ann)),
		"--stage", "createRuntime", "--socket", e.Socket, "--fail-mode", "closed", "--timeout", "3s", "--log", logPath)
	if got.exitCode != 0 {
		t.Fatalf("good run after the hostile ones: exit %d, stderr %q", got.exitCode, got.stderr)
	}
	decision(t, logPath, "redreg-good", "registered")
}

// toolsPolicy denies /opt/tools/id, a file on a bind mount from another
// file system than the container's root.
var toolsPolicy = appPolicy("tools", "tools", `exec:
  deny: [/opt/tools/id]`)

// tmpfsWithID mounts a tmpfs (a file system of its own, device 0:N) holding
// a copy of /usr/bin/id and returns its directory and the copy's identity
// as the kernel encodes it, "major:minor:inode".
func tmpfsWithID(t *testing.T) (dir, id string) {
	t.Helper()
	dir = t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	data, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "id"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "id"), &st); err != nil {
		t.Fatal(err)
	}
	return dir, fmt.Sprintf("%d:%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
}

// toolsMount bind-mounts src at /opt/tools.
func toolsMount(src string) []any {
	return []any{map[string]any{"destination": "/opt/tools", "type": "bind", "source": src, "options": []string{"rbind", "rw"}}}
}

// TestRedteamBindMountedFileIdentity: the engine now takes a file's device
// from statmount(2) by unique mount ID in the container's mount namespace.
// For a denied file on a bind mount from another file system (a tmpfs,
// whose mount IDs in the container's namespace are not the host's), the
// identity the engine stores (holdfast explain) must be the one the kernel
// reports for the file, at each create stage, and the file must die under
// every name a workload can give it.
func TestRedteamBindMountedFileIdentity(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"tools.yaml": toolsPolicy}})
	src, want := tmpfsWithID(t)
	routes := []route{
		{"direct", "exec /opt/tools/id", "137"},
		{"hardlink", "ln -f /opt/tools/id /opt/tools/renamed && exec /opt/tools/renamed", "137"},
		{"symlink", "ln -sf /opt/tools/id /tmp/hf-sym && exec /tmp/hf-sym", "137"},
		{"bind-mount-private-ns", `mkdir -p /tmp/m && exec unshare -m sh -c "mount --bind /opt/tools /tmp/m && exec /tmp/m/id"`, "137"},
		{"allowed", "exec /bin/echo allowed", "0"},
	}
	for _, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			pod := "tools-" + strings.ToLower(stage)
			hooks := hookEntries(bin, stage, e.Socket, filepath.Join(t.TempDir(), "hook.log"), "--fail-mode", "closed")

			// Created, not started: what the engine stores.
			c := r.bundle(t, bundleOpts{Args: []string{"/bin/sleep", "600"}, Annotations: appAnnotations("tools", pod+"-explain"), Hooks: hooks, Privileged: true, Mounts: toolsMount(src)})
			c.runc(t, "create", "--bundle", c.Bundle, c.ID)
			ex := explainJSON(t, e, c.ID)
			if len(ex.Rules) != 1 || ex.Rules[0].File == nil {
				t.Fatalf("explain: want one resolved rule, got %+v", ex.Rules)
			}
			if got := ex.Rules[0]; got.File.ID != want || !got.Enforced {
				t.Errorf("engine holds /opt/tools/id as %s (denied by identity: %v); the kernel's identity is %s", got.File.ID, got.Enforced, want)
			}

			// Run: each name of the file dies.
			c = r.bundle(t, bundleOpts{Args: []string{"/bin/sh", "-c", routeScript(routes)}, Annotations: appAnnotations("tools", pod), Hooks: hooks, Privileged: true, Mounts: toolsMount(src)})
			res := c.run(t)
			if res.ExitCode != 0 {
				t.Fatalf("entrypoint /bin/sh: want it to run, got %v", res)
			}
			checkRouteResults(t, "runc "+stage, res.Stdout, routes)
		})
	}
}

// openToMappedRoot makes dir and its parents searchable by others, as the
// host paths of a runtime's rootfs and hooks are: a container in a user
// namespace reaches them as an unprivileged host uid.
func openToMappedRoot(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		for ; d != "/" && d != "."; d = filepath.Dir(d) {
			st, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(d, st.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRedteamUserNamespace runs containers with a user namespace (their
// root is host uid 100000) that the locked policy selects. At createRuntime
// the hook runs as the runtime does and /bin/id dies. At createContainer the
// hook runs inside the container's user namespace, as host uid 100000: it
// cannot reach the engine's socket or state dir, so it cannot register the
// container at all; failing closed, the refusal must say so. Failing open
// (the default), the container starts unenforced until the engine's CRI
// reconcile finds it: an open hole, README's "What stays uncovered".
func TestRedteamUserNamespace(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	openToMappedRoot(t, r.rootfs, filepath.Dir(bin))
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	userns := func(t *testing.T, stage, mode string) (*container, runResult) {
		c := r.bundle(t, bundleOpts{
			Args:        []string{"/bin/id"},
			Annotations: lockedAnnotations("userns-" + strings.ToLower(stage) + "-" + mode),
			UserNS:      true,
			Hooks:       hookEntries(bin, stage, e.Socket, "-", "--fail-mode", mode),
		})
		return c, c.run(t)
	}

	t.Run("createRuntime", func(t *testing.T) {
		c, res := userns(t, "createRuntime", "closed")
		if !res.killed() || strings.Contains(res.Stdout, "uid=") {
			t.Fatalf("/bin/id in a user namespace, registered at createRuntime: want SIGKILL before any output, got %v", res)
		}
		killedEvent(t, e, c.ID, "/bin/id")
	})
	t.Run("createContainer fail-closed", func(t *testing.T) {
		_, res := userns(t, "createContainer", "closed")
		if res.ExitCode == 0 || strings.Contains(res.Stdout, "uid=") {
			t.Fatalf("want the container refused, got %v", res)
		}
		for _, s := range []string{"user namespace", "host uid 100000", "createRuntime"} {
			if !strings.Contains(res.Stderr, s) {
				t.Errorf("refusal does not name %q: %s", s, res.Stderr)
			}
		}
	})
	t.Run("createContainer fail-open", func(t *testing.T) {
		openHole(t)
		_, res := userns(t, "createContainer", "open")
		if strings.Contains(res.Stdout, "uid=") {
			t.Fatalf("a container the policies select ran /bin/id unenforced: %v", res)
		}
	})
}

// openHole skips a test of a route README's "What stays uncovered" lists as
// open, unless HOLDFAST_OPEN_HOLES=1: the test then shows the hole (it
// fails) until a fix lands and removes this call.
func openHole(t *testing.T) {
	t.Helper()
	if os.Getenv("HOLDFAST_OPEN_HOLES") != "1" {
		t.Skip("open hole listed in README, What stays uncovered; HOLDFAST_OPEN_HOLES=1 runs it")
	}
}

// TestRedteamExplainFIFOEntrypoint: an image (or a workload with a
// writable root) can make its entrypoint a FIFO. Explaining the container
// reads the entrypoint's first line to find a script's interpreter; opening
// a FIFO waits for a writer, and explain holds the engine's lock, so every
// registration on the node then waited too and the registrars fell to their
// fail mode (open by default: containers started unenforced). The explain
// must answer, and the engine must still register a container after it.
func TestRedteamExplainFIFOEntrypoint(t *testing.T) {
	r := newRuncEnv(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	fifo := filepath.Join(r.rootfs, "hf-entry-fifo")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	// Lets a blocked open finish, so a failing run still stops its engine.
	t.Cleanup(func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	_, out := r.createExplained(t, e, "locked", "fifo-entry", "/hf-entry-fifo")
	if !strings.Contains(out, "locked spec.exec.deny[0]: /bin/id → /usr/bin/id") {
		t.Errorf("explain output lacks the rule:\n%s", out)
	}

	// A registration after it is served (fail-closed: a hung engine refuses).
	c := r.sleeper(t, e, filepath.Join(t.TempDir(), "hook.log"), "after-fifo")
	c.runc(t, "create", "--bundle", c.Bundle, c.ID)
	if !engineLists(t, e, c.ID) {
		t.Errorf("container %s created after the explain is not registered", c.ID)
	}
}

// TestRedteamDecoyMountBeforeFirstRule is the decoy again, for a container
// no policy selected when it started: the reload that first brings it a
// rule must resolve that rule in the root the container started with,
// which the engine kept open since registration, not in the mount
// namespace the workload made since.
func TestRedteamDecoyMountBeforeFirstRule(t *testing.T) {
	decoyBeforeFirstRule(t, "first-rule", true)
}

// TestRedteamDecoyMountInOwnNamespace is the decoy before the first rule,
// mounted by a workload with CAP_SYS_ADMIN in the container's own mount
// namespace: the root the engine kept since registration is a directory
// of that namespace, so its lookups cross the decoy too. Open (README, What
// stays uncovered): resolving beneath the decoy needs a copy of the mount
// tree taken at registration, which takes a helper in the container's
// mount namespace.
func TestRedteamDecoyMountInOwnNamespace(t *testing.T) {
	openHole(t)
	decoyBeforeFirstRule(t, "own-ns", false)
}

// decoyBeforeFirstRule starts a decoy container (startDecoyContainer) no
// policy selects, at each create stage, then reloads a policy that denies
// /usr/bin/id for it: the hard link of the real file must die.
func decoyBeforeFirstRule(t *testing.T, pod string, newNamespace bool) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	unselected := appPolicy("execid", "someone-else", "exec:\n  deny: [/bin/id]")
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"execid.yaml": unselected}})
	for i, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			c, hard := startDecoyContainer(t, r, bin, e, stage, pod, i, newNamespace)
			if code := c.exec(t, hard); code != 0 {
				t.Fatalf("no policy selects the container yet, but %s exited %d", hard, code)
			}
			reloadPolicy(t, e, execidPolicy)
			if code := c.exec(t, hard); code != 137 {
				t.Errorf("after the reload that first selects the container, the hard link of the denied file: want SIGKILL (137), got exit %d", code)
			}
			reloadPolicy(t, e, unselected)
		})
	}
}

// TestRedteamDecoyMountInOwnNamespaceReported: what the engine can do
// about that decoy today is say so. The mount is newer than every mount
// the container's namespace had when its root was first opened, at
// registration (a mark the journal keeps), so explain names the rule's
// file as on a mount the container made after it started, also when the
// engine restarted between the decoy and the rule.
func TestRedteamDecoyMountInOwnNamespaceReported(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	unselected := appPolicy("execid", "someone-else", "exec:\n  deny: [/bin/id]")
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"execid.yaml": unselected}})
	for i, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			c, _ := startDecoyContainer(t, r, bin, e, "createRuntime", fmt.Sprintf("own-ns-reported-%d", i), i, false)
			if restart {
				e.Restart(t)
			}
			reloadPolicy(t, e, execidPolicy)
			out, err := e.CLI("containers", "explain", "--socket", e.Socket, "--id", c.ID)
			if err != nil {
				t.Fatalf("containers explain: %v\n%s", err, out)
			}
			if !strings.Contains(out, "/bin/id is on a mount the container made after it started") {
				t.Errorf("explain does not report the rule's file as on a mount made after the container started:\n%s", out)
			}
			reloadPolicy(t, e, unselected)
		})
	}
}

// TestRedteamDecoyMountAtReload: a policy reload resolves a container's
// exec rules again through one of its processes. The container's first
// process (a workload with CAP_SYS_ADMIN, or a user namespace) moves itself
// into a mount namespace of its own and bind-mounts a decoy over the denied
// /usr/bin/id; it keeps a hard link of the real file. After the reload, the
// real file must still die by its identity, under both create stages.
func TestRedteamDecoyMountAtReload(t *testing.T) {
	r := newRuncEnv(t, "/usr/bin/whoami")
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"execid.yaml": execidPolicy}})
	for i, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			c, hard := startDecoyContainer(t, r, bin, e, stage, "decoy", i, true)
			if code := c.exec(t, hard); code != 137 {
				t.Fatalf("before the reload, a hard link of the denied file: want SIGKILL (137), got exit %d", code)
			}
			reloadPolicy(t, e, strings.Replace(execidPolicy, "[/bin/id]", fmt.Sprintf("[/bin/id, /bin/whoami-%d]", i), 1))
			if code := c.exec(t, hard); code != 137 {
				t.Errorf("after the reload, the hard link of the denied file: want SIGKILL (137), got exit %d", code)
			}
		})
	}
}

// startDecoyContainer starts a container labelled app=execid, registered
// at stage, whose first process keeps a hard link of /usr/bin/id and
// bind-mounts a decoy over /usr/bin/id, in a mount namespace of its own
// when newNamespace. It returns once the decoy is mounted, with the hard
// link's path.
func startDecoyContainer(t *testing.T, r *runcEnv, bin string, e *harness.Engine, stage, pod string, i int, newNamespace bool) (*container, string) {
	t.Helper()
	hard, decoy := fmt.Sprintf("/tmp/hf-real-id-%d", i), fmt.Sprintf("/tmp/hf-decoy-%d", i)
	entry := fmt.Sprintf(`ln -f /usr/bin/id %s && echo decoy > %s && exec unshare -m sh -c "mount --bind %s /usr/bin/id && exec sleep 600"`, hard, decoy, decoy)
	if !newNamespace {
		entry = fmt.Sprintf(`ln -f /usr/bin/id %s && echo decoy > %s && mount --bind %s /usr/bin/id && exec sleep 600`, hard, decoy, decoy)
	}
	c := r.bundle(t, bundleOpts{
		Args:        []string{"/bin/sh", "-c", entry},
		Annotations: appAnnotations("execid", pod+"-"+strings.ToLower(stage)),
		Hooks:       hookEntries(bin, stage, e.Socket, filepath.Join(t.TempDir(), "hook.log"), "--fail-mode", "closed"),
		Privileged:  true,
	})
	c.runc(t, "create", "--bundle", c.Bundle, c.ID)
	c.runc(t, "start", c.ID)
	t.Cleanup(func() { exec.Command(r.runc, "--root", r.root, "kill", c.ID, "KILL").Run() })
	// runc exec joins the first process's (new) mount namespace.
	deadline := time.Now().Add(10 * time.Second)
	for c.exec(t, "/bin/sh", "-c", "grep -q ' /usr/bin/id ' /proc/1/mountinfo") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first process did not mount its decoy within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c, hard
}

// reloadPolicy makes text the engine's execid.yaml and reloads.
func reloadPolicy(t *testing.T, e *harness.Engine, text string) {
	t.Helper()
	e.WritePolicy(t, "execid.yaml", text)
	if out, err := e.CLI("policy", "reload", "--socket", e.Socket); err != nil {
		t.Fatalf("policy reload: %v\n%s", err, out)
	}
}
