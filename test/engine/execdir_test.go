package engine_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// TestPrefixRuleByDirectoryIdentity: the engine resolves a directory-prefix
// deny rule in the container's root to the directory's identity, so a file
// below it dies however it is reached: by its path, through a bind mount
// of the directory, or chrooted into the directory.
func TestPrefixRuleByDirectoryIdentity(t *testing.T) {
	require.Root(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		require.Privileged(t, "busybox", err)
	}
	root := t.TempDir()
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bin/busybox", "opt/denied/tool", "opt/denied/bin/busybox"} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bind := filepath.Join(root, "tmp", "x")
	if err := os.MkdirAll(bind, 0o755); err != nil {
		t.Fatal(err)
	}

	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", "/opt/denied/", "127.0.0.1:9")}})
	cg := harness.NewCgroup(t)
	proc := cg.Start(t, "chroot", root, "/bin/busybox", "sleep", "600")
	rootLink := fmt.Sprintf("/proc/%d/root", proc.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if r, _ := os.Readlink(rootLink); r == root {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s", rootLink, root)
		}
	}
	ctr := api.Container{ID: "dirs", CgroupID: cg.ID, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Name: "main", Pid: proc.Process.Pid}
	if _, err := e.Client().Register(context.Background(), ctr); err != nil {
		t.Fatal(err)
	}
	in := func(dir, script string) harness.Result {
		return cg.Run(t, "chroot", dir, "/bin/busybox", "sh", "-c", script)
	}
	if res := in(root, "exec /bin/busybox true"); res.ExitCode != 0 || res.Signal != 0 {
		t.Fatalf("allowed busybox: %v", res)
	}
	if out, err := exec.Command("mount", "--bind", filepath.Join(root, "opt", "denied"), bind).CombinedOutput(); err != nil {
		t.Fatalf("bind mount: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", bind).Run() })
	for _, c := range []struct{ name, dir, script string }{
		{"by its path", root, "exec /opt/denied/tool true"},
		{"through a bind mount of the directory", root, "exec /tmp/x/tool true"},
		{"chrooted into the directory", filepath.Join(root, "opt", "denied"), "exec /tool true"},
	} {
		if res := in(c.dir, c.script); !res.Killed() {
			t.Errorf("file below the denied /opt/denied/ %s: want SIGKILL, got %v", c.name, res)
		}
	}
}
