package inroot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// tree builds a root with a merged /usr, symlinks that try to leave the
// root, and a file outside it that they point at.
func tree(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{"usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "usr/bin/dash"))
	write(filepath.Join(root, "usr/bin/id"))
	write(outside)
	links := map[string]string{
		"bin":          "usr/bin",
		"usr/bin/sh":   "dash",
		"etc/abs":      "/usr/bin/id",
		"etc/escape":   "../../../outside",
		"etc/absout":   outside, // absolute: means root/<outside path>, which does not exist
		"etc/loop":     "loop",
		"etc/dangling": "/nowhere",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func statID(t *testing.T, path string) bpf.FileID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return bpf.FileID{Dev: bpf.KernelDev(unix.Major(st.Dev), unix.Minor(st.Dev)), Ino: st.Ino}
}

func TestResolveStaysInRoot(t *testing.T) {
	dir, outside := tree(t)
	r, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	tests := []struct {
		path, target string
		links        []string
	}{
		{"/bin/sh", "/usr/bin/dash", []string{"/bin", "/usr/bin/sh"}},
		{"/usr/bin/id", "/usr/bin/id", nil},
		{"/etc/abs", "/usr/bin/id", []string{"/etc/abs"}},
		{"/../../usr/../bin/id", "/usr/bin/id", []string{"/bin"}},
		// ".." after a symlinked directory leaves its target, as in the kernel.
		{"/bin/../bin/id", "/usr/bin/id", []string{"/bin"}},
	}
	for _, tc := range tests {
		f, err := r.Resolve(tc.path)
		if err != nil {
			t.Errorf("Resolve(%s): %v", tc.path, err)
			continue
		}
		if f.Target != tc.target || !slices.Equal(f.Links, tc.links) {
			t.Errorf("Resolve(%s) = %s via %v, want %s via %v", tc.path, f.Target, f.Links, tc.target, tc.links)
		}
		// On ext4 stat's device is the superblock's: the fdinfo and
		// mountinfo identity must agree with it.
		if want := statID(t, filepath.Join(dir, tc.target)); f.ID != want {
			t.Errorf("Resolve(%s) identity %s, stat says %s", tc.path, f.ID, want)
		}
	}

	// "../" and absolute symlinks stop at the root: the file outside is
	// never reached.
	for _, p := range []string{"/etc/escape", "/etc/absout", "/etc/dangling"} {
		f, err := r.Resolve(p)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Resolve(%s) = %+v, %v; want not found inside the root (not %s)", p, f, err, outside)
		}
	}
	if _, err := r.Resolve("/etc/loop"); err == nil {
		t.Error("Resolve of a symlink loop succeeded")
	}
}

func TestAliasesAndInterpreter(t *testing.T) {
	dir, _ := tree(t)
	bb := filepath.Join(dir, "usr/bin/busybox")
	if err := os.WriteFile(bb, []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"cat", "ls", "wget"} {
		if err := os.Link(bb, filepath.Join(dir, "usr/bin", n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("busybox", filepath.Join(dir, "usr/bin/echo")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "entry.sh"), []byte("#!/bin/sh -e\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := r.Resolve("/bin/wget")
	if err != nil {
		t.Fatal(err)
	}
	names, err := r.Aliases(f.ID, []string{"/bin", "/usr/bin", "/sbin"})
	if err != nil {
		t.Fatal(err)
	}
	// /bin is a symlink to /usr/bin and is not listed twice; /sbin is absent.
	want := []string{"/usr/bin/busybox", "/usr/bin/cat", "/usr/bin/echo", "/usr/bin/ls", "/usr/bin/wget"}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("Aliases = %v, want %v", names, want)
	}
	interp, ok, err := r.Interpreter("/entry.sh")
	if err != nil || !ok || interp != "/bin/sh" {
		t.Errorf("Interpreter(/entry.sh) = %q, %v, %v; want /bin/sh", interp, ok, err)
	}
	if _, ok, err := r.Interpreter("/usr/bin/busybox"); err != nil || ok {
		t.Errorf("Interpreter of a binary: ok %v, err %v", ok, err)
	}
}

// TestParseFdinfo: only whole lines count, so a head read that cut the ino
// line short is not taken for a shorter inode number.
func TestParseFdinfo(t *testing.T) {
	tests := []struct {
		in    string
		mnt   int
		ino   uint64
		found bool
	}{
		{"pos:\t0\nflags:\t02300000\nmnt_id:\t27\nino:\t9978183\n", 27, 9978183, true},
		{"pos:\t0\nflags:\t02300000\nmnt_id:\t27\nino:\t99781", 0, 0, false},
		{"pos:\t0\nflags:\t02300000\nmnt_id:\t27\n", 0, 0, false},
		{"ino:\t5\nmnt_id:\t3\nextra:\tx", 3, 5, true},
		{"mnt_id:\tx\nino:\t5\n", 0, 0, false},
	}
	for _, tt := range tests {
		mnt, ino, found := parseFdinfo([]byte(tt.in))
		if found != tt.found || found && (mnt != tt.mnt || ino != tt.ino) {
			t.Errorf("parseFdinfo(%q) = %d, %d, %v; want %d, %d, %v", tt.in, mnt, ino, found, tt.mnt, tt.ino, tt.found)
		}
	}
}

// TestIdentityWithoutStatxMountID: where statx cannot name a file's mount
// (Linux before 5.8), fstat and fdinfo give the same identities, modes and
// link counts, and Resolve still checks stat's inode against stat's.
func TestIdentityWithoutStatxMountID(t *testing.T) {
	dir, _ := tree(t)
	r, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	paths := []string{"/bin/sh", "/usr/bin/id", "/etc/abs", "/usr/bin"}
	var withStatx []File
	for _, p := range paths {
		f, err := r.Resolve(p)
		if err != nil {
			t.Fatal(err)
		}
		withStatx = append(withStatx, f)
	}
	identify = func(f *os.File) (linux.FileIdentity, error) {
		return linux.FileIdentity{}, linux.ErrNoStatxMountID
	}
	defer func() { identify = linux.Identify }()
	for i, p := range paths {
		f, err := r.Resolve(p)
		if err != nil {
			t.Fatalf("Resolve(%s) without statx: %v", p, err)
		}
		if w := withStatx[i]; f.ID != w.ID || f.Mode != w.Mode || f.Nlink != w.Nlink {
			t.Errorf("%s: without statx %v %v %d, with %v %v %d", p, f.ID, f.Mode, f.Nlink, w.ID, w.Mode, w.Nlink)
		}
	}
}
