// End-to-end tests of holdfast-oci-hook: the real hook binary run by real
// runc and podman, registering with a real engine whose pinned BPF programs
// kill a denied binary before its first instruction.
package hook_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/pinned"
	"github.com/holdfast-dev/holdfast/test/require"
	"github.com/holdfast-dev/holdfast/test/rootfs"
)

// appPolicy is a WorkloadPolicy named name for pods labelled app=app;
// rules is the rest of its spec, indented as at the top of spec.
func appPolicy(name, app, rules string) string {
	return harness.Policy(name, "podLabels: {matchLabels: {app: "+app+"}}", rules)
}

// lockedPolicy kills /bin/id in containers labelled app=locked.
var lockedPolicy = appPolicy("locked", "locked", `exec:
  deny: [/bin/id]`)

// appAnnotations are CRI-O's annotations for pod, labelled app=app.
func appAnnotations(app, pod string) map[string]string {
	return map[string]string{
		"io.kubernetes.pod.namespace":  "hooktest",
		"io.kubernetes.pod.name":       pod,
		"io.kubernetes.pod.uid":        "uid-" + pod,
		"io.kubernetes.container.name": "main",
		"io.kubernetes.cri-o.Labels":   `{"app":"` + app + `"}`,
	}
}

// lockedAnnotations are CRI-O's annotations for a pod the locked policy selects.
func lockedAnnotations(pod string) map[string]string { return appAnnotations("locked", pod) }

func hookBinary(t testing.TB) string {
	t.Helper()
	return harness.Build(t, "./hook/cmd/holdfast-oci-hook")
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	require.Root(t)
	p, err := exec.LookPath(name)
	if err != nil {
		require.Privileged(t, name, err)
	}
	return p
}

func randomID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// runcHook is one entry of config.json's hooks.
type runcHook struct {
	Path    string   `json:"path"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Timeout int      `json:"timeout,omitempty"`
}

// bundleOpts shape a runc bundle.
type bundleOpts struct {
	Args        []string
	Annotations map[string]string
	CgroupNS    bool // give the container its own cgroup namespace
	// UserNS gives the container a user namespace mapping its root to
	// host uid and gid 100000.
	UserNS bool
	// Privileged makes the rootfs writable and gives the process what
	// chroot and mount need.
	Privileged bool
	Hooks      map[string][]runcHook // stage → hooks
	Mounts     []any                 // added to runc's default mounts
}

// runcEnv is a runc state root and a busybox rootfs shared by a test's containers.
type runcEnv struct {
	runc   string
	root   string // runc --root
	rootfs string
}

// newRuncEnv builds the rootfs, with the host's dynamically linked binaries
// (and their libraries) added.
func newRuncEnv(t testing.TB, binaries ...string) *runcEnv {
	t.Helper()
	runc := needTool(t, "runc")
	dir := t.TempDir()
	fs, err := rootfs.Build(filepath.Join(dir, "rootfs"))
	if err != nil {
		require.Privileged(t, "busybox rootfs", err)
	}
	for _, b := range binaries {
		if err := rootfs.CopyDynamic(fs, b); err != nil {
			t.Fatal(err)
		}
	}
	return &runcEnv{runc: runc, root: filepath.Join(dir, "runc"), rootfs: fs}
}

// container is one runc container a test owns; Cleanup deletes it.
type container struct {
	env    *runcEnv
	ID     string
	Bundle string
}

// bundle writes a bundle for a new container id: runc's default spec with
// the shared rootfs, the given process, annotations and hooks, and a
// cgroupsPath of its own so runc removes the cgroup on delete.
func (r *runcEnv) bundle(t testing.TB, o bundleOpts) *container {
	t.Helper()
	c := &container{env: r, ID: randomID("hf-hook-"), Bundle: t.TempDir()}
	if out, err := exec.Command(r.runc, "spec", "--bundle", c.Bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(c.Bundle, "config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec["root"] = map[string]any{"path": r.rootfs, "readonly": !o.Privileged}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	if o.Privileged {
		caps := proc["capabilities"].(map[string]any)
		for _, set := range []string{"bounding", "effective", "permitted"} {
			caps[set] = append(caps[set].([]any), "CAP_SYS_ADMIN", "CAP_SYS_CHROOT")
		}
	}
	proc["args"] = o.Args
	spec["annotations"] = o.Annotations
	linux := spec["linux"].(map[string]any)
	linux["cgroupsPath"] = "/holdfast-hook-e2e-" + c.ID
	if o.CgroupNS {
		linux["namespaces"] = append(linux["namespaces"].([]any), map[string]any{"type": "cgroup"})
	}
	if o.UserNS {
		linux["namespaces"] = append(linux["namespaces"].([]any), map[string]any{"type": "user"})
		ids := []any{map[string]any{"containerID": 0, "hostID": 100000, "size": 65536}}
		linux["uidMappings"], linux["gidMappings"] = ids, ids
		// A user namespace cannot mount the host's v1 cgroup hierarchies.
		spec["mounts"] = slices.DeleteFunc(spec["mounts"].([]any), func(m any) bool {
			return m.(map[string]any)["destination"] == "/sys/fs/cgroup"
		})
	}
	if o.Hooks != nil {
		spec["hooks"] = o.Hooks
	}
	spec["mounts"] = append(spec["mounts"].([]any), o.Mounts...)
	data, err = json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command(r.runc, "--root", r.root, "delete", "--force", c.ID).Run()
	})
	return c
}

// sleeper is a bundle of a pod the locked policy selects whose container
// sleeps, registered by the hook at createRuntime and logging to logPath.
func (r *runcEnv) sleeper(t testing.TB, e *harness.Engine, logPath, pod string) *container {
	t.Helper()
	return r.bundle(t, bundleOpts{
		Args:        []string{"/bin/sleep", "600"},
		Annotations: lockedAnnotations(pod),
		Hooks:       hookEntries(hookBinary(t), "createRuntime", e.Socket, logPath, "--fail-mode", "closed"),
	})
}

// runResult is how `runc run` ended.
type runResult struct {
	Stdout, Stderr string
	ExitCode       int
}

func (r runResult) String() string {
	return fmt.Sprintf("exit=%d stdout=%q stderr=%q", r.ExitCode, r.Stdout, r.Stderr)
}

// killed reports whether the container's process died of SIGKILL: runc run
// exits with 128+signal.
func (r runResult) killed() bool { return r.ExitCode == 128+int(syscall.SIGKILL) }

// run runs the container in the foreground: create (hooks), start, wait,
// delete (poststop).
func (c *container) run(t *testing.T) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.env.runc, "--root", c.env.root, "run", "--bundle", c.Bundle, c.ID)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := runResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("runc run %s: %v", c.ID, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("runc run %s did not finish within a minute: %v", c.ID, res)
	}
	return res
}

// runc runs one runc subcommand on this container and fails the test on
// error. Output goes through a file, not a pipe: after `runc create` the
// container holds its stdio open, and reading a pipe would wait for it.
func (c *container) runc(t testing.TB, args ...string) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "runc-out-")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	args = append([]string{"--root", c.env.root}, args...)
	cmd := exec.Command(c.env.runc, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(out.Name())
		t.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, data)
	}
}

// waitStopped waits until runc reports the container stopped.
func (c *container) waitStopped(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command(c.env.runc, "--root", c.env.root, "state", c.ID).Output()
		var st struct{ Status string }
		if err == nil && json.Unmarshal(out, &st) == nil && st.Status == "stopped" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not stop within 30s: %s %v", c.ID, out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// explainedRules is `holdfast containers explain -o json` of a container:
// each rule, whether it is denied by identity, and the file it resolved to.
type explainedRules struct {
	Rules []struct {
		Rule     string
		Enforced bool
		File     *struct{ Target, ID string }
	}
}

func explainJSON(t testing.TB, e *harness.Engine, id string) explainedRules {
	t.Helper()
	js, err := e.CLI("containers", "explain", "--socket", e.Socket, "--id", id, "-o", "json")
	if err != nil {
		t.Fatalf("containers explain -o json: %v\n%s", err, js)
	}
	var ex explainedRules
	if err := json.Unmarshal([]byte(js), &ex); err != nil {
		t.Fatalf("explain json: %v\n%s", err, js)
	}
	return ex
}

// hookLog reads the hook's decision log.
func hookLog(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("hook log %s has a malformed line %q: %v", path, sc.Text(), err)
		}
		out = append(out, line)
	}
	return out
}

// decision finds the hook log line for a container id and outcome. It
// waits a little, because podman runs poststop from a cleanup process that
// may finish after `podman run --rm` returns.
func decision(t testing.TB, logPath, id, outcome string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := hookLog(t, logPath)
		for _, l := range lines {
			if l["id"] == id && l["outcome"] == outcome {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook log has no %q decision for %s after 10s; log:\n%v", outcome, id, lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgroupIDOf reads the cgroup ID the hook registered a container with.
func cgroupIDOf(t testing.TB, logPath, id string) uint64 {
	t.Helper()
	l := decision(t, logPath, id, "registered")
	f, ok := l["cgroupId"].(float64)
	if !ok || f == 0 {
		t.Fatalf("registered decision for %s has no cgroup id: %v", id, l)
	}
	return uint64(f)
}

// engineLists reports whether the engine has a registration for id.
func engineLists(t testing.TB, e *harness.Engine, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := e.Client().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.ID == id {
			return true
		}
	}
	return false
}

// cgroupMapped reports whether the engine's pinned cgroup map has an entry
// for cgroupID: what the kernel enforces, not what the engine says.
func cgroupMapped(t testing.TB, e *harness.Engine, cgroupID uint64) bool {
	t.Helper()
	_, ok := pinned.CgroupEntry(t, e.BPFDir, cgroupID)
	return ok
}

// expectForgotten checks that a removed container left nothing behind in
// the engine or the kernel.
func expectForgotten(t testing.TB, e *harness.Engine, id string, cgroupID uint64) {
	t.Helper()
	if engineLists(t, e, id) {
		t.Errorf("engine still lists container %s after it was removed", id)
	}
	if cgroupMapped(t, e, cgroupID) {
		t.Errorf("pinned cgroup map still has cgroup %d of removed container %s", cgroupID, id)
	}
}

// killedEvent waits for the engine's event that it killed binary in container id.
func killedEvent(t testing.TB, e *harness.Engine, id, binary string) map[string]any {
	t.Helper()
	return e.WaitEvent(t, func(ev map[string]any) bool {
		ctr, _ := ev["container"].(map[string]any)
		return ev["action"] == "exec-killed" && ev["binary"] == binary && ctr["id"] == id
	})
}

// createExplained creates (does not start) a container of a pod labelled
// app=app running args, registered by the hook at createRuntime, and returns
// it with the engine's `containers explain` of it.
func (r *runcEnv) createExplained(t *testing.T, e *harness.Engine, app, pod string, args ...string) (*container, string) {
	t.Helper()
	c := r.bundle(t, bundleOpts{
		Args:        args,
		Annotations: appAnnotations(app, pod),
		Hooks:       hookEntries(hookBinary(t), "createRuntime", e.Socket, filepath.Join(t.TempDir(), "hook.log"), "--fail-mode", "closed"),
	})
	c.runc(t, "create", "--bundle", c.Bundle, c.ID)
	out, err := e.CLI("containers", "explain", "--socket", e.Socket, "--id", c.ID)
	if err != nil {
		t.Fatalf("containers explain: %v\n%s", err, out)
	}
	t.Logf("explain %s:\n%s", pod, out)
	return c, out
}

// runRoutesEachStage runs routes in a privileged container of a pod
// labelled app=app registered by the hook at each create stage, checks each
// route's exit status, and hands the container to check.
func (r *runcEnv) runRoutesEachStage(t *testing.T, e *harness.Engine, app string, routes []route, check func(t *testing.T, c *container, pod string)) {
	t.Helper()
	bin := hookBinary(t)
	script := routeScript(routes)
	for _, stage := range []string{"createRuntime", "createContainer"} {
		t.Run(stage, func(t *testing.T) {
			pod := app + "-" + strings.ToLower(stage)
			c := r.bundle(t, bundleOpts{
				Args:        []string{"/bin/sh", "-c", script},
				Annotations: appAnnotations(app, pod),
				Hooks:       hookEntries(bin, stage, e.Socket, filepath.Join(t.TempDir(), "hook.log"), "--fail-mode", "closed"),
				Privileged:  true,
			})
			res := c.run(t)
			if res.ExitCode != 0 {
				t.Fatalf("entrypoint /bin/sh: want it to run, got %v", res)
			}
			checkRouteResults(t, "runc "+stage, res.Stdout, routes)
			check(t, c, pod)
		})
	}
}

// runPodmanRoutes runs routes in a podman container on overlayfs holding
// the test helpers, of a pod labelled app=app that the installed hook
// registers; it checks each route's exit status and returns the container's
// id.
func runPodmanRoutes(t *testing.T, e *harness.Engine, app, pod string, routes []route) string {
	t.Helper()
	hooksDir, logPath := installHook(t, e)
	p := newPodmanImage(t, hooksDir, "overlay", addHelpers)
	res := p.run(t, "hf-"+pod, appAnnotations(app, pod), "/bin/sh", "-c", routeScript(routes))
	if res.ExitCode != 0 {
		t.Fatalf("entrypoint /bin/sh: want it to run, got %v", res)
	}
	checkRouteResults(t, "podman overlay", res.Stdout, routes)
	id, _ := idOfRegistered(t, logPath, pod, "main")
	return id
}
