package hook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// allowPolicy lets only the listed files run. Exact allow rules are
// resolved in the container's root like deny rules and allow the file they
// name there by identity (and the path as written): all busybox applets are
// one file, so listing /usr/bin/sh allows every name of it (wget, nc, ...),
// as explain warns.
var allowPolicy = appPolicy("allowlist", "allowlist", `exec:
  allow: [/usr/bin/sh, /usr/bin/cat, /usr/bin/cp, /usr/bin/ln, /usr/bin/id, /usr/local/bin/]`)

// allowRoutes run id, which is listed, and every way of running its bytes
// or name from somewhere not listed.
var allowRoutes = []route{
	{"listed", "exec /usr/bin/id", "0"},
	{"listed-via-bin-symlink", "exec /bin/id", "0"},
	{"listed-via-proc-fd", "exec " + hfexec + " procfd /usr/bin/id", "0"},
	{"listed-prefix", "exec " + hfexec + " dlopen " + libAllowed, "0"},
	{"copy", "cp /usr/bin/id /tmp/al-copy && exec /tmp/al-copy", "137"},
	{"written-at-run-time", "exec " + hfexec + " written /usr/bin/id /tmp/al-written", "137"},
	{"written-by-shell", "cp /usr/bin/id /tmp/al-cat && cat /usr/bin/id > /tmp/al-cat && exec /tmp/al-cat", "137"},
	{"hardlink-is-the-same-file", "ln -f /usr/bin/id /tmp/al-hard && exec /tmp/al-hard", "0"},
	{"other-name-of-a-listed-multi-call-binary", "exec /usr/bin/true", "0"},
	{"memfd", "exec " + hfexec + " memfd /usr/bin/id", "137"},
	{"memfd-via-proc-fd", "exec " + hfexec + " memfd-proc /usr/bin/id", "137"},
	{"copy-via-proc-fd", "cp /usr/bin/id /tmp/al-fd && exec " + hfexec + " procfd /tmp/al-fd", "137"},
	{"loader-as-program", "exec " + loader + " /usr/bin/id", "137"},
}

// notAllowedEvent waits for the event of an exec refused in container id
// for not being on its allow list, and checks it names no rule. Only the
// first few refusals per container come out one by one (the engine
// rate-limits events into summaries), so ask for an early one.
func notAllowedEvent(t *testing.T, e *harness.Engine, id, binary string) map[string]any {
	t.Helper()
	ev := e.WaitEvent(t, func(ev map[string]any) bool {
		ctr, _ := ev["container"].(map[string]any)
		return ev["action"] == "exec-killed" && ev["binary"] == binary && ctr["id"] == id
	})
	if ev["reason"] != "not-allowed" || ev["rule"] != nil || ev["policy"] != nil {
		t.Errorf("event of %s refused by the allow list: want reason not-allowed and no rule, got %v", binary, ev)
	}
	return ev
}

// TestRuncAllowList: in runc bundles, for both create stages, only listed
// paths run; copies, files written at run time, memfds, /proc/self/fd/N
// and the loader run as a program die by SIGKILL, and the engine's event
// says why and in which container.
func TestRuncAllowList(t *testing.T) {
	r := newRuncEnv(t)
	addHelpers(t, r.rootfs)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"allow.yaml": allowPolicy}})
	r.runRoutesEachStage(t, e, "allowlist", allowRoutes, func(t *testing.T, c *container, pod string) {
		ev := notAllowedEvent(t, e, c.ID, "/tmp/al-copy")
		ctr, _ := ev["container"].(map[string]any)
		if ctr["namespace"] != "hooktest" || ctr["pod"] != pod || ctr["name"] != "main" {
			t.Errorf("not-allowed event: want the container's identity (hooktest/%s/main), got %v", pod, ctr)
		}
	})
}

// TestPodmanAllowList runs the allow-list routes in a podman container on
// overlayfs.
func TestPodmanAllowList(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"allow.yaml": allowPolicy}})
	id := runPodmanRoutes(t, e, "allowlist", "podman-allow", allowRoutes)
	ev := notAllowedEvent(t, e, id, "/tmp/al-copy")
	if ctr, _ := ev["container"].(map[string]any); ctr["pod"] != "podman-allow" {
		t.Errorf("not-allowed event: want the container's identity, got %v", ctr)
	}
}

// explainAllowPolicy's allow list misses the entrypoint /bin/id (its
// resolved path is /usr/bin/id) and names /bin/sh, a symlinked path that
// resolves to busybox, which it then allows under every name.
var explainAllowPolicy = appPolicy("explain-allow", "explain-allow", `exec:
  allow: [/bin/sh, /usr/bin/cat, /usr/local/bin/]`)

// TestExplainAllowList: explain warns when an allow list does not contain
// the entrypoint, or a script entrypoint's interpreter, and when an allow
// rule names a path the kernel never reports; it does not warn when the
// entrypoint is listed.
func TestExplainAllowList(t *testing.T) {
	r := newRuncEnv(t)
	if err := os.MkdirAll(filepath.Join(r.rootfs, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.rootfs, "usr/local/bin/entry.sh"), []byte("#!/bin/id\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{
		"explain-allow.yaml": explainAllowPolicy,
		"allow.yaml":         allowPolicy,
	}})
	explain := func(app, pod string, args ...string) string {
		t.Helper()
		_, out := r.createExplained(t, e, app, pod, args...)
		return out
	}
	const entryWarning = "warning: the allow list does not contain the entrypoint "

	out := explain("explain-allow", "id", "/bin/id")
	for _, w := range []string{
		"explain-allow spec.exec.allow[0]: /bin/sh → /usr/bin/sh, ",
		"warning: /usr/bin/sh is a multi-call binary (installed as ",
		"explain-allow spec.exec.allow[2]: /usr/local/bin/ → ",
		entryWarning + "/bin/id (list it as /usr/bin/id): the container dies at start",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("explain of an entrypoint missing from the allow list lacks %q", w)
		}
	}

	out = explain("explain-allow", "script", "/usr/local/bin/entry.sh")
	if w := "warning: the allow list does not contain /bin/id (list it as /usr/bin/id), the interpreter of the entrypoint /usr/local/bin/entry.sh: the container dies at start"; !strings.Contains(out, w) {
		t.Errorf("explain of a listed script whose interpreter is not listed lacks %q", w)
	}
	if strings.Contains(out, entryWarning) {
		t.Errorf("explain warns that a listed entrypoint is not listed")
	}

	// A rule naming the symlinked /bin/sh allows the file it resolves to.
	out = explain("explain-allow", "symlinked", "/bin/sh", "-c", "sleep 600")
	if strings.Contains(out, "warning: the allow list does not contain") {
		t.Errorf("explain warns that /bin/sh, allowed through its symlinked name, is not on the allow list")
	}

	// allowPolicy lists /usr/bin/sh, which /bin/sh resolves to.
	out = explain("allowlist", "listed", "/bin/sh", "-c", "sleep 600")
	if strings.Contains(out, "warning: the allow list does not contain") {
		t.Errorf("explain warns that the listed entrypoint /bin/sh is not on the allow list")
	}
	if !strings.Contains(out, "allowlist spec.exec.allow[0]: /usr/bin/sh → ") {
		t.Errorf("explain does not list the allow rules")
	}
}
