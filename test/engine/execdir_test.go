package engine_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// TestPrefixRuleByDirectoryIdentity: the engine resolves a directory-prefix
// deny rule in the container's root to the directory's identity, so a file
// below it dies however it is reached: by its path, through a bind mount
// of the directory, or chrooted into the directory.
func TestPrefixRuleByDirectoryIdentity(t *testing.T) {
	root := t.TempDir()
	data := busyboxBytes(t)
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
	registerChrooted(t, e, cg, root, "dirs")
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
