package inroot

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/test/require"
)

// TestDeviceFromStatmountMatchesMountinfo resolves files in the root of a
// process in a mount namespace of its own (an overlay and a tmpfs only it
// sees, as a container's rootfs is before pivot_root), once with the
// device asked of the kernel by mount ID and once read from that process's
// mountinfo: both must give the same identity, which the exec programs
// match.
func TestDeviceFromStatmountMatchesMountinfo(t *testing.T) {
	require.Root(t)
	dir := t.TempDir()
	script := `set -e
mount -t tmpfs none "$1"
mkdir "$1/lower" "$1/upper" "$1/work" "$1/merged"
echo x > "$1/lower/file"
mount -t overlay overlay -o lowerdir="$1/lower",upperdir="$1/upper",workdir="$1/work" "$1/merged"
mkdir "$1/merged/dir"
echo ready
exec sleep 600`
	cmd, _ := inMountNamespace(t, script, dir, "overlay mount in a new mount namespace")

	byID, err := OfProcess(cmd.Process.Pid, filepath.Join(dir, "merged"))
	if err != nil {
		t.Fatal(err)
	}
	defer byID.Close()
	if !byID.statmount {
		if _, err := linux.MountNamespaceID(cmd.Process.Pid); errors.Is(err, linux.ErrNoStatmount) {
			require.Unsupported(t, "statmount in another mount namespace", err)
		}
		t.Fatalf("statmount not used for a root opened through pid %d", cmd.Process.Pid)
	}
	byText, err := OfProcess(cmd.Process.Pid, filepath.Join(dir, "merged"))
	if err != nil {
		t.Fatal(err)
	}
	defer byText.Close()
	byText.statmount = false

	for _, p := range []string{"/file", "/dir", "/"} {
		a, err := byID.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := byText.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != b.ID {
			t.Errorf("%s: statmount gives %v, mountinfo %v", p, a.ID, b.ID)
		}
		if a.ID.Dev == 0 {
			t.Errorf("%s: no device", p)
		}
	}
	// The overlay is a superblock of its own: a file on it must not get the
	// device of the tmpfs below.
	f, _ := byID.Lookup("/file")
	tmp, err := OfProcess(cmd.Process.Pid, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	lower, err := tmp.Lookup("/lower/file")
	if err != nil {
		t.Fatal(err)
	}
	if f.ID.Dev == lower.ID.Dev {
		t.Errorf("overlay file and its lower tmpfs file share device %d", f.ID.Dev)
	}
}

// A clone resolves in the same root after the original is closed, and
// after the process whose mount namespace it was opened through is gone.
func TestCloneOutlivesOriginalAndNamespace(t *testing.T) {
	require.Root(t)
	dir := t.TempDir()
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs none "$1" && echo x > "$1/file" && echo ready && exec sleep 600`, "sh", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		require.Privileged(t, "mount namespace", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		require.Privileged(t, "tmpfs in a new mount namespace", errors.New("the namespace's mount failed"))
	}
	root, err := OfProcess(cmd.Process.Pid, dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := root.Lookup("/file")
	if err != nil {
		t.Fatal(err)
	}
	clone, err := root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Close()
	root.Close()
	cmd.Process.Kill()
	cmd.Wait() // the namespace's last process: the kernel detaches its mounts
	got, err := clone.Lookup("/file")
	if err != nil {
		t.Fatalf("clone after the namespace is gone: %v", err)
	}
	if got.ID != want.ID {
		t.Errorf("clone resolves /file to %v, the original did to %v", got.ID, want.ID)
	}
}

// TestOnNewMount: in the root of a process in a mount namespace of its
// own, a file bind-mounted over after MarkMounts is reported as on a new
// mount through a clone of the marked root (what the engine keeps); a file
// beside it, the same file through a root never marked, and through the
// root just marked (the registration's own lookups) are not.
func TestOnNewMount(t *testing.T) {
	require.Root(t)
	dir := t.TempDir()
	script := `set -e
mkdir "$1/root"
mount -t tmpfs none "$1/root"
echo real > "$1/root/target"; echo other > "$1/root/other"; echo decoy > "$1/root/decoy"
echo ready
while [ ! -e "$1/go" ]; do sleep 0.05; done
mount --bind "$1/root/decoy" "$1/root/target"
echo mounted
exec sleep 600`
	cmd, lines := inMountNamespace(t, script, dir, "tmpfs mount in a new mount namespace")
	marked, err := OfProcess(cmd.Process.Pid, filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer marked.Close()
	if err := marked.MarkMounts(); err != nil {
		if errors.Is(err, linux.ErrNoStatmount) {
			require.Unsupported(t, "listmount in another mount namespace", err)
		}
		t.Fatal(err)
	}
	unmarked, err := OfProcess(cmd.Process.Pid, filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer unmarked.Close()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if line, _ := lines.ReadString('\n'); strings.TrimSpace(line) != "mounted" {
		t.Fatal("the decoy was not mounted")
	}
	// The engine keeps a clone of the root it marked; the marked root
	// itself serves the registration's own lookups, before the workload
	// ran, and skips the check.
	kept, err := marked.Clone()
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	for _, tt := range []struct {
		root *Root
		path string
		want bool
	}{
		{kept, "/target", true},
		{kept, "/other", false},
		{unmarked, "/target", false},
		{marked, "/target", false},
	} {
		f, err := tt.root.Lookup(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if f.OnNewMount != tt.want {
			t.Errorf("%s (marked %v): OnNewMount %v, want %v", tt.path, tt.root.newestMount != 0, f.OnNewMount, tt.want)
		}
		if r, err := tt.root.Resolve(tt.path); err != nil || r.OnNewMount != tt.want {
			t.Errorf("Resolve %s (marked %v): OnNewMount %v (%v), want %v", tt.path, tt.root.newestMount != 0, r.OnNewMount, err, tt.want)
		}
	}
}

// inMountNamespace runs script (with dir as $1) in a mount namespace of its
// own, killed when the test ends, and waits for it to print "ready";
// feature names what its mounts need, for the skip.
func inMountNamespace(t *testing.T, script, dir, feature string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		require.Privileged(t, "mount namespace", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewReader(out)
	if line, _ := lines.ReadString('\n'); strings.TrimSpace(line) != "ready" {
		require.Privileged(t, feature, errors.New("the namespace's mounts failed"))
	}
	return cmd, lines
}

// TestStatxIdentityMatchesFdinfo: a file's inode number and mount ID as
// statx reports them are the ones fdinfo shows (file_inode()->i_ino, what
// the exec programs read), on overlays of every layer layout a runtime
// makes: all layers on one file system, and layers on two with xino off
// and on; for a lower file, an upper one, a copied-up one and directories.
func TestStatxIdentityMatchesFdinfo(t *testing.T) {
	require.Root(t)
	dir := t.TempDir()
	script := `set -e
base="$1"
mkdir "$base/disk" "$base/mem"
mount -t tmpfs none "$base/mem"
layout() { # name, lower's base, upper's base, extra options
	m="$base/merged-$1"
	mkdir -p "$2/$1-lower/dir" "$3/$1-upper" "$3/$1-work" "$m"
	echo x > "$2/$1-lower/lowerfile"; echo x > "$2/$1-lower/copied"; echo x > "$2/$1-lower/dir/file"
	mount -t overlay overlay -o "lowerdir=$2/$1-lower,upperdir=$3/$1-upper,workdir=$3/$1-work$4" "$m"
	echo y > "$m/upperfile"; echo y >> "$m/copied"; mkdir "$m/upperdir"
}
layout samefs "$base/mem" "$base/mem" ""
layout xinooff "$base/disk" "$base/mem" ",xino=off"
layout xinoon "$base/disk" "$base/mem" ",xino=on"
echo ready
exec sleep 600`
	cmd, _ := inMountNamespace(t, script, dir, "overlay mounts in a new mount namespace")
	for _, layout := range []string{"samefs", "xinooff", "xinoon"} {
		root, err := OfProcess(cmd.Process.Pid, filepath.Join(dir, "merged-"+layout))
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		for _, p := range []string{"/", "/lowerfile", "/upperfile", "/copied", "/dir", "/dir/file", "/upperdir"} {
			f, err := linux.OpenInRoot(root.dir, p, true, false)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := linux.Identify(f)
			if err != nil {
				f.Close()
				t.Fatal(err)
			}
			mnt, ino, err := fdinfo(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if fi.Ino != ino || fi.MntID != mnt {
				t.Errorf("%s %s: statx says inode %d on mount %d, fdinfo inode %d on mount %d", layout, p, fi.Ino, fi.MntID, ino, mnt)
			}
		}
	}
}
