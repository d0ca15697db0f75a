package hook_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
	"github.com/holdfast-dev/holdfast/test/rootfs"
)

// Where addHelpers puts its files in a rootfs.
const (
	hfexec     = "/usr/local/bin/hfexec"       // testdata/hfexec.c
	libDenied  = "/usr/lib/hf/libhfdeny.so"    // a library a policy denies
	libAllowed = "/usr/lib/hf/libhfok.so"      // a library no policy names
	loader     = "/lib64/ld-linux-x86-64.so.2" // ldd's name for it; /usr/lib64/... in the merged-/usr rootfs
)

// addHelpers compiles testdata/hfexec.c and two shared libraries with the
// host's cc and puts them into the rootfs at hfexec, libDenied and
// libAllowed, with the libraries hfexec links (the same as id's).
func addHelpers(t *testing.T, fs string) {
	t.Helper()
	cc := needTool(t, "cc")
	if _, err := os.Stat(filepath.Join(fs, strings.TrimPrefix(loader, "/"))); err != nil {
		t.Fatalf("rootfs has no dynamic loader at %s: %v", loader, err)
	}
	dir := t.TempDir()
	src, err := filepath.Abs("testdata/hfexec.c")
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, "lib.c")
	if err := os.WriteFile(lib, []byte("int hf_lib(void) { return 42; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(out string, args ...string) string {
		t.Helper()
		path := filepath.Join(dir, out)
		if b, err := exec.Command(cc, append(args, "-o", path)...).CombinedOutput(); err != nil {
			require.Privileged(t, "cc "+out, fmt.Errorf("%w: %s", err, b))
		}
		return path
	}
	files := map[string]string{
		hfexec:     build("hfexec", "-O2", "-Wall", src),
		libDenied:  build("libhfdeny.so", "-shared", "-fPIC", lib),
		libAllowed: build("libhfok.so", "-shared", "-fPIC", lib),
	}
	libs, err := rootfs.Libraries(files[hfexec])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		files[l] = l
	}
	for dst, from := range files {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		// Written through the rootfs's own /lib and /lib64 symlinks.
		path := filepath.Join(fs, dst)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// route is one way to run something in a container and the exit status it
// must end with: "137" is death by SIGKILL.
type route struct {
	name, cmd, want string
}

// routeScript runs each route in a shell of its own and prints
// "name=status" per route, after what the route wrote to stderr: a route
// that fails in an unexpected way says why in the test's log.
func routeScript(routes []route) string {
	var b strings.Builder
	for _, r := range routes {
		if strings.Contains(r.cmd, "'") {
			panic("route " + r.name + " has a single quote")
		}
		fmt.Fprintf(&b, "sh -c '%s' 2>&1 >/dev/null; echo %s=$?\n", r.cmd, r.name)
	}
	return b.String()
}

// checkRouteResults compares the script's output with each route's want.
func checkRouteResults(t *testing.T, what, out string, routes []route) {
	t.Helper()
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	for _, r := range routes {
		if got[r.name] != r.want {
			t.Errorf("%s: route %s (%s): want exit %s, got %q", what, r.name, r.cmd, r.want, got[r.name])
		}
	}
	if t.Failed() {
		t.Logf("%s output:\n%s", what, out)
	}
}

// loaderPolicy denies id and a library, by paths as they are in the image.
var loaderPolicy = appPolicy("loader", "loader", `exec:
  deny: [/usr/bin/id, `+libDenied+`]`)

// loaderRoutes map a denied file executable without exec'ing it: the
// loader run as a program, mmap(PROT_EXEC), dlopen and LD_PRELOAD; the
// same loader, libraries and helper run an allowed file.
var loaderRoutes = []route{
	{"loader", "exec " + loader + " /usr/bin/id", "137"},
	{"loader-usr-path", "exec /usr" + loader + " /bin/id", "137"},
	{"loader-copy", "cp /usr" + loader + " /tmp/ld-copy && exec /tmp/ld-copy /usr/bin/id", "137"},
	{"loader-hardlink", "ln -f /usr/bin/id /tmp/id-hard && exec " + loader + " /tmp/id-hard", "137"},
	{"mmap-exec", "exec " + hfexec + " mmap /usr/bin/id", "137"},
	{"dlopen", "exec " + hfexec + " dlopen " + libDenied, "137"},
	{"dlopen-lib-symlink", "exec " + hfexec + " dlopen /lib/hf/libhfdeny.so", "137"},
	{"dlopen-copy-hardlink", "ln -f " + libDenied + " /tmp/lib-hard.so && exec " + hfexec + " dlopen /tmp/lib-hard.so", "137"},
	{"ld-preload", "export LD_PRELOAD=" + libDenied + " && exec " + hfexec + " dlopen " + libAllowed, "137"},
	{"allowed-dlopen", "exec " + hfexec + " dlopen " + libAllowed, "0"},
	{"allowed-mmap", "exec " + hfexec + " mmap " + libAllowed, "0"},
	{"allowed-loader", "exec " + loader + " " + hfexec + " dlopen " + libAllowed, "0"},
	{"allowed-echo", "exec /bin/echo ok", "0"},
}

// mmapKilledEvent waits for the engine's event that a file named base was
// killed when mapped in container id, by rule.
func mmapKilledEvent(t *testing.T, e *harness.Engine, id, base, rule string) map[string]any {
	t.Helper()
	return e.WaitEvent(t, func(ev map[string]any) bool {
		ctr, _ := ev["container"].(map[string]any)
		return ev["action"] == "mmap-killed" && ev["binary"] == base && ctr["id"] == id && ev["rule"] == rule
	})
}

// TestRuncLoaderRoute: in runc bundles, for both create stages, a denied
// binary run by the dynamic loader and a denied library loaded by dlopen,
// LD_PRELOAD or mmap(PROT_EXEC) are killed; the loader, dlopen and the
// entrypoint keep working for files no rule names. A path too deep to
// resolve is refused, and the event says so.
func TestRuncLoaderRoute(t *testing.T) {
	r := newRuncEnv(t)
	addHelpers(t, r.rootfs)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"loader.yaml": loaderPolicy}})
	routes := append(loaderRoutes, route{"too-deep", "cd /tmp && exec " + hfexec + " deep 8300 /bin/echo", "137"})
	r.runRoutesEachStage(t, e, "loader", routes, func(t *testing.T, c *container, _ string) {
		mmapKilledEvent(t, e, c.ID, "id", "/usr/bin/id")
		ev := mmapKilledEvent(t, e, c.ID, "libhfdeny.so", libDenied)
		if ev["policy"] != "loader" || ev["reason"] != nil {
			t.Errorf("mmap-killed event of a rule: want policy loader and no reason, got %v", ev)
		}
		deep := e.WaitEvent(t, func(ev map[string]any) bool {
			ctr, _ := ev["container"].(map[string]any)
			return ev["action"] == "exec-killed" && ev["binary"] == "./x" && ctr["id"] == c.ID
		})
		if deep["reason"] != "unresolved" || deep["rule"] != nil {
			t.Errorf("kill of a path too deep to resolve: want reason unresolved and no rule, got %v", deep)
		}
	})
}

// TestPodmanLoaderRoute runs the loader routes in a podman container on
// overlayfs.
func TestPodmanLoaderRoute(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"loader.yaml": loaderPolicy}})
	id := runPodmanRoutes(t, e, "loader", "podman-loader", loaderRoutes)
	mmapKilledEvent(t, e, id, "id", "/usr/bin/id")
	mmapKilledEvent(t, e, id, "libhfdeny.so", libDenied)
}

// installHook installs the hook for podman with `holdfast install crio`
// and returns the hooks dir and the hook's log.
func installHook(t *testing.T, e *harness.Engine) (hooksDir, logPath string) {
	t.Helper()
	dir := t.TempDir()
	hooksDir, installDir, logPath := filepath.Join(dir, "hooks.d"), filepath.Join(dir, "libexec"), filepath.Join(dir, "hook.log")
	if out, err := e.CLI("install", "crio", "--hooks-dir", hooksDir, "--install-dir", installDir,
		"--hook-binary", hookBinary(t), "--socket", e.Socket, "--fail-mode", "closed", "--log", logPath); err != nil {
		t.Fatalf("holdfast install crio: %v\n%s", err, out)
	}
	return hooksDir, logPath
}
