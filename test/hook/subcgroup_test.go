package hook_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// TestPodmanSubCgroup: a container that can write its own
// cgroup namespace (privileged, private cgroupns, as systemd-in-a-container
// or Docker-in-Docker run) moves its shell into a sub-cgroup it made after
// registration, nested two deep, and still cannot run the denied binary.
func TestPodmanSubCgroup(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	dir := t.TempDir()
	hooksDir, installDir, logPath := filepath.Join(dir, "hooks.d"), filepath.Join(dir, "libexec"), filepath.Join(dir, "hook.log")
	if out, err := e.CLI("install", "crio", "--hooks-dir", hooksDir, "--install-dir", installDir,
		"--hook-binary", hookBinary(t), "--socket", e.Socket, "--fail-mode", "closed", "--log", logPath); err != nil {
		t.Fatalf("holdfast install crio: %v\n%s", err, out)
	}
	p := newPodman(t, hooksDir)

	escape := `mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && mkdir -p /tmp/cg/escape/deeper &&
echo $$ > /tmp/cg/escape/deeper/cgroup.procs && grep '^0::' /proc/self/cgroup && /bin/echo moved && /bin/id`
	res := p.run(t, "hf-subcgroup", lockedAnnotations("subcgroup-pod"),
		"--privileged", "--cgroupns=private", "--", "/bin/sh", "-c", escape)
	if !strings.Contains(res.Stdout, "0::/escape/deeper\n") || !strings.Contains(res.Stdout, "moved\n") {
		t.Fatalf("the container did not move into its own sub-cgroup: %v", res)
	}
	if !res.killed() || strings.Contains(res.Stdout, "uid=") {
		t.Errorf("denied /bin/id from a sub-cgroup of a registered container: want SIGKILL before any output, got %v", res)
	}
	id, _ := idOfRegistered(t, logPath, "subcgroup-pod", "main")
	killedEvent(t, e, id, "/bin/id")
}
