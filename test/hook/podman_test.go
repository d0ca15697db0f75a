package hook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
	"github.com/holdfast-dev/holdfast/test/rootfs"
)

// podman runs podman on storage of its own, so tests leave nothing in the
// host's container store.
type podman struct {
	bin      string
	global   []string
	hooksDir string
}

const podmanImage = "localhost/holdfast-hook-test:latest"

func newPodman(t *testing.T, hooksDir string) *podman {
	t.Helper()
	return newPodmanDriver(t, hooksDir, "vfs")
}

// newPodmanDriver is newPodman with another storage driver (overlay: the
// container's files are overlayfs inodes).
func newPodmanDriver(t *testing.T, hooksDir, driver string) *podman {
	t.Helper()
	return newPodmanImage(t, hooksDir, driver, nil)
}

// newPodmanImage is newPodmanDriver with extra files: extra adds them to
// the rootfs before it becomes the image.
func newPodmanImage(t *testing.T, hooksDir, driver string, extra func(t *testing.T, rootfs string)) *podman {
	t.Helper()
	bin := needTool(t, "podman")
	// Short: podman refuses a runroot longer than 50 characters.
	dir, err := os.MkdirTemp("", "hf-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removePodmanDir(t, dir) })
	p := &podman{
		bin: bin,
		global: []string{
			"--root", filepath.Join(dir, "root"),
			"--runroot", filepath.Join(dir, "runroot"),
			"--tmpdir", filepath.Join(dir, "tmp"),
			"--storage-driver", driver,
			"--events-backend", "file",
			"--cgroup-manager", "cgroupfs",
			"--hooks-dir", hooksDir,
		},
		hooksDir: hooksDir,
	}
	t.Cleanup(func() {
		out, err := p.cmd(context.Background(), "rm", "--all", "--force").CombinedOutput()
		if err != nil {
			t.Errorf("podman rm --all: %v\n%s", err, out)
		}
	})

	fs, err := rootfs.Build(filepath.Join(t.TempDir(), "rootfs"))
	if err != nil {
		require.Privileged(t, "busybox rootfs", err)
	}
	if extra != nil {
		extra(t, fs)
	}
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if out, err := exec.Command("tar", "-C", fs, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar rootfs: %v\n%s", err, out)
	}
	if out, err := p.cmd(context.Background(), "import", tarball, podmanImage).CombinedOutput(); err != nil {
		require.Privileged(t, "podman import", errors.New(string(out)))
	}
	return p
}

// removePodmanDir removes podman's storage, unmounting what the overlay
// driver left mounted below it. A container's cleanup process (podman
// container cleanup, run by conmon) may still be writing there as the test
// ends: retry until it is gone.
func removePodmanDir(t *testing.T, dir string) {
	harness.UnmountBelow(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove podman storage: %v", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
		harness.UnmountBelow(t, dir)
	}
}

func (p *podman) cmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, p.bin, append(append([]string{}, p.global...), args...)...)
}

// run starts a container with --rm and waits for it; annotations are
// CSV-quoted because podman splits --annotation values on commas.
func (p *podman) run(t *testing.T, name string, annotations map[string]string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runArgs := []string{"run", "--rm", "--name", name, "--network", "none",
		"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024"}
	runArgs = append(runArgs, annotationArgs(annotations)...)
	// Options for run itself may come first, up to "--".
	if i := slices.Index(args, "--"); i >= 0 {
		runArgs, args = append(runArgs, args[:i]...), args[i+1:]
	}
	runArgs = append(append(runArgs, podmanImage), args...)
	cmd := p.cmd(ctx, runArgs...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("podman run %s did not finish: %s", name, stderr.String())
	}
	res := runResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		res.ExitCode = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("podman run %s: %v", name, err)
	}
	return res
}

// sandbox starts a pod's sandbox container with CRI-O's sandbox
// annotations (hook/testdata/crio-sandbox.json) and the given pod labels,
// and returns its id. Its own SandboxID annotation keeps the fixture's
// value: podman chooses the id only after the annotations are set.
func (p *podman) sandbox(t *testing.T, name string, labels map[string]string) string {
	t.Helper()
	a := harness.RuntimeAnnotations(t, "crio-sandbox.json")
	all := map[string]string{}
	if err := json.Unmarshal([]byte(a["io.kubernetes.cri-o.Labels"]), &all); err != nil {
		t.Fatal(err)
	}
	for k := range all {
		if !strings.HasPrefix(k, "io.kubernetes.") {
			delete(all, k)
			delete(a, k)
		}
	}
	for k, v := range labels {
		all[k], a[k] = v, v
	}
	data, _ := json.Marshal(all)
	a["io.kubernetes.cri-o.Labels"] = string(data)
	args := []string{"run", "--detach", "--name", name, "--network", "none",
		"--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1024:1024"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := p.cmd(ctx, append(append(args, annotationArgs(a)...), podmanImage, "/bin/sleep", "999999")...).CombinedOutput()
	if err != nil {
		t.Fatalf("start sandbox %s: %v\n%s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// crioContainer is CRI-O's annotation set of an application container
// (hook/testdata/crio-container.json) named name in the pod of sandboxID.
func crioContainer(t *testing.T, sandboxID, name string) map[string]string {
	t.Helper()
	a := harness.RuntimeAnnotations(t, "crio-container.json")
	a["io.kubernetes.cri-o.SandboxID"] = sandboxID
	a["io.kubernetes.container.name"] = name
	labels := map[string]string{}
	if err := json.Unmarshal([]byte(a["io.kubernetes.cri-o.Labels"]), &labels); err != nil {
		t.Fatal(err)
	}
	labels["io.kubernetes.container.name"] = name
	data, _ := json.Marshal(labels)
	a["io.kubernetes.cri-o.Labels"] = string(data)
	return a
}

// annotationArgs are --annotation flags, CSV-quoted because podman splits
// their values on commas.
func annotationArgs(annotations map[string]string) []string {
	var args []string
	for k, v := range annotations {
		args = append(args, "--annotation", `"`+strings.ReplaceAll(k+"="+v, `"`, `""`)+`"`)
	}
	return args
}

// idOfRegistered finds the container id and cgroup the hook registered for
// a pod's container.
func idOfRegistered(t *testing.T, logPath, pod, container string) (id string, cgroupID uint64) {
	t.Helper()
	for _, l := range hookLog(t, logPath) {
		if l["outcome"] == "registered" && l["pod"] == pod && l["container"] == container {
			id, _ = l["id"].(string)
			f, _ := l["cgroupId"].(float64)
			return id, uint64(f)
		}
	}
	t.Fatalf("hook log has no registration for pod %s: %v", pod, hookLog(t, logPath))
	return "", 0
}

// TestPodmanHooksDir installs the hook with `holdfast install crio` into a
// hooks dir and runs podman with that --hooks-dir emulating CRI-O exactly:
// a sandbox container with CRI-O's sandbox annotations, then application
// containers with CRI-O's container annotations. A policy selecting the
// pod's labels holds from the first instruction, also when the engine
// restarted between sandbox and container, while a container of an
// unselected pod runs freely.
func TestPodmanHooksDir(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	hookSrc := hookBinary(t)
	dir := t.TempDir()
	hooksDir, installDir, logPath := filepath.Join(dir, "hooks.d"), filepath.Join(dir, "libexec"), filepath.Join(dir, "hook.log")
	install := []string{"install", "crio", "--hooks-dir", hooksDir, "--install-dir", installDir,
		"--hook-binary", hookSrc, "--socket", e.Socket, "--fail-mode", "closed", "--log", logPath}

	out, err := e.CLI(install...)
	if err != nil {
		t.Fatalf("holdfast install crio: %v\n%s", err, out)
	}
	for _, f := range []string{filepath.Join(hooksDir, "holdfast.json"), filepath.Join(installDir, "holdfast-oci-hook"), filepath.Join(installDir, "holdfast-oci-hook.json"),
		filepath.Join(installDir, "holdfast")} { // the hook's slow path

		if !strings.Contains(out, "created "+f) {
			t.Errorf("install did not report creating %s:\n%s", f, out)
		}
	}
	if out, err := e.CLI(install...); err != nil || strings.Count(out, "unchanged ") != 4 {
		t.Errorf("second install: want 4 unchanged files, got %v:\n%s", err, out)
	}

	p := newPodman(t, hooksDir)
	// A pod as CRI-O makes it: the sandbox carries the pod's labels, the
	// application container only kubelet's container labels and the
	// sandbox's id.
	lockedPod := p.sandbox(t, "hf-sandbox-locked", map[string]string{"app": "locked", "tier": "front"})
	if res := p.run(t, "hf-denied", crioContainer(t, lockedPod, "main"), "/bin/id"); !res.killed() || strings.Contains(res.Stdout, "uid=") {
		t.Errorf("denied /bin/id in a container of a selected pod: want SIGKILL before any output, got %v", res)
	}
	id, cgroupID := idOfRegistered(t, logPath, "web-7f9c6b5d4-x2kqp", "main")
	killedEvent(t, e, id, "/bin/id")
	decision(t, logPath, id, "unregistered")
	expectForgotten(t, e, id, cgroupID)

	// The engine restarted between the sandbox and the container: the
	// sandbox's registration, with the pod's labels, is in its registry.
	e.Restart(t)
	if res := p.run(t, "hf-denied-after-restart", crioContainer(t, lockedPod, "main"), "/bin/id"); !res.killed() {
		t.Errorf("denied /bin/id in a container of a selected pod after an engine restart: want SIGKILL, got %v", res)
	}
	if res := p.run(t, "hf-allowed", crioContainer(t, lockedPod, "main"), "/bin/echo", "allowed"); res.ExitCode != 0 || res.Stdout != "allowed\n" {
		t.Errorf("allowed command in a container of a selected pod: %v", res)
	}

	freePod := p.sandbox(t, "hf-sandbox-free", map[string]string{"app": "other"})
	if res := p.run(t, "hf-free", crioContainer(t, freePod, "free"), "/bin/id"); res.ExitCode != 0 || !strings.Contains(res.Stdout, "uid=0") {
		t.Errorf("/bin/id in a container of a pod no policy selects: %v", res)
	}
	freeID, freeCgroup := idOfRegistered(t, logPath, "web-7f9c6b5d4-x2kqp", "free")
	if reg := decision(t, logPath, freeID, "registered"); reg["policies"] != nil {
		t.Errorf("unselected container got policies %v", reg["policies"])
	}
	decision(t, logPath, freeID, "unregistered")
	expectForgotten(t, e, freeID, freeCgroup)

	// A container whose sandbox the engine never saw, with no CRI runtime
	// to ask: its labels are unknown, and the closed fail mode refuses it.
	if res := p.run(t, "hf-orphan", crioContainer(t, "never-seen-sandbox", "main"), "/bin/echo", "ran"); res.ExitCode == 0 {
		t.Errorf("a container of an unknown pod ran under fail-mode closed: %v", res)
	}

	out, err = e.CLI("uninstall", "crio", "--hooks-dir", hooksDir, "--install-dir", installDir)
	if err != nil || strings.Count(out, "removed ") != 4 {
		t.Fatalf("holdfast uninstall crio: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(hooksDir); len(entries) != 0 {
		t.Errorf("hooks dir not empty after uninstall: %v", entries)
	}
}
