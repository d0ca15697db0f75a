package bpf

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/test/require"
)

// statID is a file's identity from stat. On ext4 (the test's temp dir)
// st_dev is the superblock's device, so converting its encoding gives what
// the programs read from the inode; that is what this test checks.
func statID(t *testing.T, path string) FileID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return FileID{Dev: KernelDev(unix.Major(st.Dev), unix.Minor(st.Dev)), Ino: st.Ino}
}

// TestExecDeniedByFileIdentity denies one file by identity only (no path
// rule names it) and runs it under every name the kernel can give it.
func TestExecDeniedByFileIdentity(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		require.Privileged(t, "static busybox (busybox-static, installed by make deps)", err)
	}
	base := resolved(t, t.TempDir())
	// A chroot needs a static binary inside it.
	root := filepath.Join(base, "root")
	// Every name ends in "busybox", which busybox takes as "run argv[1]".
	denied := filepath.Join(root, "bin", "busybox")
	copyExecutable(t, resolved(t, busybox), denied)
	other := filepath.Join(root, "other", "busybox")
	copyExecutable(t, resolved(t, busybox), other) // same bytes, another inode
	hard := filepath.Join(base, "hard", "busybox")
	if err := os.Mkdir(filepath.Dir(hard), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(denied, hard); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(base, "sym", "busybox")
	if err := os.Mkdir(filepath.Dir(sym), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(denied, sym); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}

	// An exec rule for a path that does not exist turns exec checks on;
	// the file is denied only through file_rules.
	if err := e.PutRuleset(Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, "/nonexistent/holdfast", 1)}}); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "files")
	plain := env.cgroup(t, "plain") // same ruleset, no files: keyed by cgroup
	for _, c := range []*testCgroup{cg, plain} {
		if err := e.SetCgroup(c.id, 1); err != nil {
			t.Fatal(err)
		}
	}
	id := statID(t, denied)
	if err := e.SetCgroupFiles(cg.id, []FileRule{{File: id, RuleID: 7}}); err != nil {
		t.Fatal(err)
	}
	if got, err := e.CgroupFiles(cg.id); err != nil || len(got) != 1 || got[0].File != id || got[0].RuleID != 7 {
		t.Fatalf("CgroupFiles = %v, %v", got, err)
	}

	tests := []struct {
		name   string
		cg     *testCgroup
		path   string
		args   []string
		killed bool
	}{
		{"direct", cg, denied, []string{"true"}, true},
		{"hard link", cg, hard, []string{"true"}, true},
		{"symlink", cg, sym, []string{"true"}, true},
		{"chroot", cg, "chroot", []string{root, "/bin/busybox", "true"}, true},
		{"bind mount in a private mount namespace", cg, "unshare",
			[]string{"-m", "--propagation", "private", "sh", "-c", "mount --bind " + filepath.Dir(denied) + " " + mnt + " && exec " + mnt + "/busybox true"}, true},
		{"a copy is another file", cg, other, []string{"true"}, false},
		{"another cgroup with the same ruleset", plain, denied, []string{"true"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := command(tc.cg, tc.path, tc.args...).CombinedOutput()
			if tc.killed && !killedBySIGKILL(err) {
				t.Fatalf("%s %v: want SIGKILL, got err=%v output=%q", tc.path, tc.args, err, out)
			}
			if !tc.killed && err != nil {
				t.Fatalf("%s %v: want it to run, got %v: %s", tc.path, tc.args, err, out)
			}
		})
	}

	if err := e.SetCgroupFiles(cg.id, nil); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, denied, "true").Run(); err != nil {
		t.Fatalf("after the files were cleared: %v", err)
	}
	if err := e.DeleteCgroupFiles(cg.id); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("DeleteCgroupFiles of a cgroup without files: want ErrNotExist, got %v", err)
	}
}

// benchFiles gives a cgroup four file identity rules, as resolving
// benchRuleset's exact rules in a container would: files the benchmark's
// own execs are not, so every exec does the identity lookup and misses.
func benchFiles(b *testing.B, e *Enforcer, cgroupID uint64) {
	var rules []FileRule
	for i := range uint64(4) {
		rules = append(rules, FileRule{File: FileID{Dev: KernelDev(254, 0), Ino: 1<<40 + cgroupID%(1<<20)*4 + i}, RuleID: uint32(i)})
	}
	if err := e.SetCgroupFiles(cgroupID, rules); err != nil {
		b.Fatal(err)
	}
}
