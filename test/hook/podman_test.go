package hook_test

import (
	"bytes"
	"context"
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
// driver left mounted below it.
func removePodmanDir(t *testing.T, dir string) {
	harness.UnmountBelow(t, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove podman storage: %v", err)
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
	for k, v := range annotations {
		runArgs = append(runArgs, "--annotation", `"`+strings.ReplaceAll(k+"="+v, `"`, `""`)+`"`)
	}
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

// idOfRegistered finds the container id and cgroup the hook registered for a pod.
func idOfRegistered(t *testing.T, logPath, pod string) (id string, cgroupID uint64) {
	t.Helper()
	for _, l := range hookLog(t, logPath) {
		if l["outcome"] == "registered" && l["pod"] == pod {
			id, _ = l["id"].(string)
			f, _ := l["cgroupId"].(float64)
			return id, uint64(f)
		}
	}
	t.Fatalf("hook log has no registration for pod %s: %v", pod, hookLog(t, logPath))
	return "", 0
}

// TestPodmanHooksDir installs the hook with `holdfast install crio` into a
// hooks dir, runs podman with that --hooks-dir and CRI-O's annotations, and
// checks that a policy selecting by the labels annotation holds from the
// first instruction while an unselected container runs freely.
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
	locked := map[string]string{
		"io.kubernetes.pod.namespace": "shop",
		"io.kubernetes.pod.name":      "locked-pod",
		"io.kubernetes.cri-o.Labels":  `{"app":"locked","tier":"front"}`,
	}
	if res := p.run(t, "hf-denied", locked, "/bin/id"); !res.killed() || strings.Contains(res.Stdout, "uid=") {
		t.Errorf("denied /bin/id in a selected podman container: want SIGKILL before any output, got %v", res)
	}
	id, cgroupID := idOfRegistered(t, logPath, "locked-pod")
	killedEvent(t, e, id, "/bin/id")
	decision(t, logPath, id, "unregistered")
	expectForgotten(t, e, id, cgroupID)

	locked["io.kubernetes.pod.name"] = "locked-pod-2"
	if res := p.run(t, "hf-allowed", locked, "/bin/echo", "allowed"); res.ExitCode != 0 || res.Stdout != "allowed\n" {
		t.Errorf("allowed command in a selected container: %v", res)
	}

	free := map[string]string{
		"io.kubernetes.pod.namespace": "shop",
		"io.kubernetes.pod.name":      "free-pod",
		"io.kubernetes.cri-o.Labels":  `{"app":"other"}`,
	}
	if res := p.run(t, "hf-free", free, "/bin/id"); res.ExitCode != 0 || !strings.Contains(res.Stdout, "uid=0") {
		t.Errorf("/bin/id in a container no policy selects: %v", res)
	}
	freeID, freeCgroup := idOfRegistered(t, logPath, "free-pod")
	if reg := decision(t, logPath, freeID, "registered"); reg["policies"] != nil {
		t.Errorf("unselected container got policies %v", reg["policies"])
	}
	decision(t, logPath, freeID, "unregistered")
	expectForgotten(t, e, freeID, freeCgroup)

	out, err = e.CLI("uninstall", "crio", "--hooks-dir", hooksDir, "--install-dir", installDir)
	if err != nil || strings.Count(out, "removed ") != 4 {
		t.Fatalf("holdfast uninstall crio: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(hooksDir); len(entries) != 0 {
		t.Errorf("hooks dir not empty after uninstall: %v", entries)
	}
}
