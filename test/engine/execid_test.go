package engine_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// TestOverlayAcrossFileSystems registers a "container" whose root is an
// overlayfs with its lower layer on the disk and its upper layer on tmpfs.
// There stat(2) reports a per-layer pseudo device for a file, not the
// overlay superblock's device that the exec program reads from the inode;
// the engine's identity must be the kernel's, so the denied file dies under
// another path (a bind mount). (A hard link made there copies the file up
// and overlayfs gives the new name the upper inode's number: a new file to
// the kernel. With both layers on one file system, as runtimes keep them,
// the number stays; the podman overlay test covers that.)
func TestOverlayAcrossFileSystems(t *testing.T) {
	base := t.TempDir()
	lower, tmp, merged := filepath.Join(base, "lower"), filepath.Join(base, "tmp"), filepath.Join(base, "merged")
	for _, d := range []string{filepath.Join(lower, "bin"), filepath.Join(lower, "tmp"), tmp, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := busyboxBytes(t)
	// Two files with the same bytes: busybox runs things, denied is denied.
	for _, n := range []string{"busybox", "denied"} {
		if err := os.WriteFile(filepath.Join(lower, "bin", n), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(args ...string) {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			require.Privileged(t, "mount "+strings.Join(args, " "), err)
			t.Fatalf("mount: %v: %s", err, out)
		}
	}
	mount("-t", "tmpfs", "tmpfs", tmp)
	t.Cleanup(func() { exec.Command("umount", tmp).Run() })
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount("-t", "overlay", "overlay", "-o", "lowerdir="+lower+",upperdir="+tmp+"/upper,workdir="+tmp+"/work", merged)
	t.Cleanup(func() { exec.Command("umount", merged).Run() })

	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(merged, "bin", "denied"), &st); err != nil {
		t.Fatal(err)
	}
	var sfs unix.Stat_t
	if err := unix.Stat(merged, &sfs); err != nil {
		t.Fatal(err)
	}
	if st.Dev == sfs.Dev {
		t.Logf("stat reports the overlay device %d:%d for a lower file here", unix.Major(st.Dev), unix.Minor(st.Dev))
	} else {
		t.Logf("stat reports %d:%d for a lower file, the overlay is %d:%d: stat is not what the kernel checks",
			unix.Major(st.Dev), unix.Minor(st.Dev), unix.Major(sfs.Dev), unix.Minor(sfs.Dev))
	}

	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", "/bin/denied", "127.0.0.1:9")}})
	cg := harness.NewCgroup(t)
	registerChrooted(t, e, cg, merged, "overlay")
	in := func(script string) harness.Result {
		return cg.Run(t, "chroot", merged, "/bin/busybox", "sh", "-c", script)
	}
	if res := in("exec /bin/busybox true"); res.ExitCode != 0 || res.Signal != 0 {
		t.Fatalf("allowed busybox: %v", res)
	}
	if res := in("exec /bin/denied true"); !res.Killed() {
		t.Errorf("denied file by its own path: want SIGKILL, got %v", res)
	}
	bind := filepath.Join(merged, "tmp", "x")
	if err := os.MkdirAll(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	mount("--bind", filepath.Join(merged, "bin"), bind)
	t.Cleanup(func() { exec.Command("umount", bind).Run() })
	if res := in("exec /tmp/x/denied true"); !res.Killed() {
		t.Errorf("denied file through a bind mount: want SIGKILL, got %v", res)
	}
	if res := in("exec /tmp/x/busybox true"); res.ExitCode != 0 || res.Signal != 0 {
		t.Errorf("allowed busybox through the bind mount: %v", res)
	}
}
