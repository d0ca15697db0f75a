package hook_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/rootfs"
)

// execidPolicy denies /bin/id, which in the test rootfs (merged /usr) is
// /usr/bin/id, a dynamically linked binary of its own: no path the kernel
// reports for it is "/bin/id", so only the file's identity catches it.
var execidPolicy = appPolicy("execid", "execid", `exec:
  deny: [/bin/id]`)

// idRoutes are the ways a workload can run a denied file under another
// name: each must die by SIGKILL; echo, allowed, must run.
func idRoutes(t *testing.T) []route {
	t.Helper()
	libs, err := rootfs.Libraries("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	// A chroot holding hard links of id, its loader and its libraries.
	var tree []string
	for _, l := range libs {
		tree = append(tree, fmt.Sprintf("mkdir -p /tmp/c%s && ln -f %s /tmp/c%s", filepath.Dir(l), l, l))
	}
	tree = append(tree, "mkdir -p /tmp/c/x && ln -f /usr/bin/id /tmp/c/x/renamed", "exec chroot /tmp/c /x/renamed")
	return []route{
		{"direct", "exec /bin/id", "137"},
		{"usr-path", "exec /usr/bin/id", "137"},
		{"symlink", "ln -sf /usr/bin/id /tmp/hf-sym && exec /tmp/hf-sym", "137"},
		{"hardlink", "ln -f /usr/bin/id /tmp/hf-hard && exec /tmp/hf-hard", "137"},
		{"chroot", "exec chroot /usr /bin/id", "137"},
		{"chroot-hardlinks", strings.Join(tree, " && "), "137"},
		{"bind-mount-private-ns", `mkdir -p /tmp/m && exec unshare -m sh -c "mount --bind /usr/bin /tmp/m && exec /tmp/m/id"`, "137"},
		{"allowed", "exec /bin/echo allowed", "0"},
	}
}

// TestRuncDeniesTheFileNotTheName: on a merged-/usr rootfs with a
// dynamically linked id, the rule /bin/id holds through every other name of
// the file, for both create stages.
func TestRuncDeniesTheFileNotTheName(t *testing.T) {
	r := newRuncEnv(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"execid.yaml": execidPolicy}})
	r.runRoutesEachStage(t, e, "execid", idRoutes(t), func(t *testing.T, c *container, _ string) {
		killedEvent(t, e, c.ID, "/bin/id")
	})
}

// TestPodmanOverlayDeniesTheFileNotTheName runs the same routes in a podman
// container on overlayfs, where the kernel's file is the overlay inode and
// a hard link copies the file up.
func TestPodmanOverlayDeniesTheFileNotTheName(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"execid.yaml": execidPolicy}})
	hooksDir, logPath := installHook(t, e)
	p := newPodmanDriver(t, hooksDir, "overlay")
	routes := idRoutes(t)
	res := p.run(t, "hf-routes", appAnnotations("execid", "podman-routes"), "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_CHROOT",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined", "--", "/bin/sh", "-c", routeScript(routes))
	if res.ExitCode != 0 {
		t.Fatalf("entrypoint: want it to run, got %v", res)
	}
	checkRouteResults(t, "podman overlay", res.Stdout, routes)
	id, _ := idOfRegistered(t, logPath, "podman-routes", "main")
	killedEvent(t, e, id, "/bin/id")
}

// TestReloadResolvesAgain adds a rule while a container runs: the new rule
// holds in it by identity (not only by path) at once.
func TestReloadResolvesAgain(t *testing.T) {
	r := newRuncEnv(t, "/usr/bin/whoami")
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"execid.yaml": execidPolicy}})
	logPath := filepath.Join(t.TempDir(), "hook.log")
	c := r.bundle(t, bundleOpts{
		Args:        []string{"/bin/sleep", "600"},
		Annotations: appAnnotations("execid", "reload"),
		Hooks:       hookEntries(bin, "createRuntime", e.Socket, logPath, "--fail-mode", "closed"),
		Privileged:  true,
	})
	c.runc(t, "create", "--bundle", c.Bundle, c.ID)
	c.runc(t, "start", c.ID)
	t.Cleanup(func() { exec.Command(r.runc, "--root", r.root, "kill", c.ID, "KILL").Run() })

	whoami := func(cmd string) int { return c.exec(t, "/bin/sh", "-c", cmd) }
	if code := whoami("exec /bin/whoami"); code != 0 {
		t.Fatalf("whoami before any rule names it: exit %d", code)
	}
	e.WritePolicy(t, "execid.yaml", strings.Replace(execidPolicy, "[/bin/id]", "[/bin/id, /bin/whoami]", 1))
	if out, err := e.CLI("policy", "reload", "--socket", e.Socket); err != nil {
		t.Fatalf("policy reload: %v\n%s", err, out)
	}
	for _, cmd := range []string{"exec /bin/whoami", "ln -f /usr/bin/whoami /tmp/w && exec /tmp/w"} {
		if code := whoami(cmd); code != 137 {
			t.Errorf("after reload, %q: want SIGKILL (137), got exit %d", cmd, code)
		}
	}
	if code := whoami("exec /bin/id"); code != 137 {
		t.Errorf("after reload, the earlier rule: want SIGKILL (137), got exit %d", code)
	}
	if code := whoami("exec /bin/echo ok"); code != 0 {
		t.Errorf("after reload, allowed echo: exit %d", code)
	}
}

// exec runs a command in the running container and returns its exit code.
func (c *container) exec(t *testing.T, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.env.runc, append([]string{"--root", c.env.root, "exec", c.ID}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("runc exec %v: %v\n%s", args, err, out)
	return -1
}

// explainPolicy has one rule for each warning explain gives.
var explainPolicy = appPolicy("explain", "explain", `exec:
  deny: [/bin/id, /usr/bin/not-in-this-image, /bin/wget, /sbin/]`)

// TestExplain asks the engine what each rule means in a created (not yet
// started) container.
func TestExplain(t *testing.T) {
	r := newRuncEnv(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"explain.yaml": explainPolicy}})
	c, out := r.createExplained(t, e, "explain", "explain", "/bin/sleep", "600")
	want := []string{
		"explain spec.exec.deny[0]: /bin/id → /usr/bin/id, ",
		"[denied by identity]",
		"explain spec.exec.deny[1]: /usr/bin/not-in-this-image → nothing in this image",
		"warning: resolves to nothing in this image",
		// Applets are hard links of busybox: every name is the same file.
		"explain spec.exec.deny[2]: /bin/wget → /usr/bin/wget, ",
		"warning: /usr/bin/wget is a multi-call binary (installed as ",
		"/usr/bin/busybox",
		// The symlinked /sbin/ denies the directory it resolves to.
		"explain spec.exec.deny[3]: /sbin/ → /usr/sbin, ",
		"warning: the entrypoint /bin/sleep is denied by explain spec.exec.deny[2]: the container dies at start",
		"entrypoint: /bin/sleep 600 → /usr/bin/sleep, ",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("explain output lacks %q", w)
		}
	}

	ex := explainJSON(t, e, c.ID)
	var enforced []string
	for _, r := range ex.Rules {
		if r.Enforced {
			enforced = append(enforced, r.Rule)
		}
	}
	if !slices.Equal(enforced, []string{"/bin/id", "/bin/wget", "/sbin/"}) {
		t.Errorf("rules denied by identity: %v, want [/bin/id /bin/wget /sbin/]", enforced)
	}
	if strings.Contains(out, "warning: directory prefix rules match") {
		t.Errorf("explain warns about /sbin/, which is denied by the identity of /usr/sbin")
	}
	// A script entrypoint dies with its interpreter.
	if err := os.WriteFile(filepath.Join(r.rootfs, "entry.sh"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, out = r.createExplained(t, e, "explain", "explain-script", "/entry.sh")
	if w := "warning: the entrypoint /entry.sh is a script run by /bin/sh, which explain spec.exec.deny[2] denies: the container dies at start"; !strings.Contains(out, w) {
		t.Errorf("explain of a script entrypoint lacks %q:\n%s", w, out)
	}

	if out, err := e.CLI("containers", "explain", "--socket", e.Socket, "--id", "no-such"); err == nil {
		t.Errorf("explain of an unknown container succeeded:\n%s", out)
	}
}
