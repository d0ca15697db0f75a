package bpf

// Red team, second pass: attacks on the mechanisms added after the first
// pass (path walk to the mount namespace's root, directory identity,
// PT_INTERP judging, cgroup move kill, the egress NAT check). Every
// TestRedteam2* test asserts the secure behaviour; one that fails is an open
// hole.

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/holdfast-dev/holdfast/test/require"
)

// A directory-prefix rule denies by the directory's identity, walking the
// exec'd dentry's d_parent chain. A hard link of a file below the denied
// directory, made in another directory of the same file system, is the same
// inode under another parent: neither its path nor its parents name the
// denied directory, and the file's own identity is stored for exact rules
// only. Any process that may link the file (its owner, or CAP_FOWNER, as a
// container's root has) runs it.
func TestRedteam2ExecPrefixRuleEscapedByHardLink(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	busybox := staticBusybox(t)
	base := resolved(t, t.TempDir())
	denied := filepath.Join(base, "denied")
	bin := filepath.Join(denied, "true") // busybox runs the applet named by argv[0]
	copyExecutable(t, busybox, bin)
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}

	rs := Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, denied+"/", 1)}}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "hardlink")
	if err := e.SetCgroup(cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCgroupFiles(cg.id, []FileRule{{File: statID(t, denied), RuleID: 1, Dir: true}}); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, bin).Run(); !killedBySIGKILL(err) {
		t.Fatalf("exec %s in the cgroup: %v, want killed by SIGKILL", bin, err)
	}

	// What the workload does: link(2) the denied file elsewhere, exec the link.
	link := filepath.Join(outside, "true")
	out, err := command(cg, busybox, "ln", bin, link).CombinedOutput()
	if err != nil {
		t.Fatalf("ln %s %s in the cgroup: %v: %s", bin, link, err, out)
	}
	if err := command(cg, link).Run(); !killedBySIGKILL(err) {
		t.Errorf("exec %s, a hard link of %s below the denied prefix %s/: err=%v, want killed by SIGKILL", link, bin, denied, err)
	}
}

// An overlay whose lower layer is the denied directory, mounted by the
// workload in a user and mount namespace of its own (no capability needed
// where user namespaces may be created). The exec'd file is the overlay's:
// its path is the overlay mount's, its d_parent chain ends at the overlay's
// root, and its device is the overlay's, so neither the path, nor the
// directory identity, nor an exact rule's (device, inode) sees the layer
// file below the denied directory.
func TestRedteam2ExecRuleEscapedByOverlayLower(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	busybox := staticBusybox(t)
	base := resolved(t, t.TempDir())
	denied := filepath.Join(base, "denied")
	bin := filepath.Join(denied, "true")
	copyExecutable(t, busybox, bin)
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		require.Privileged(t, "util-linux unshare", err)
	}

	rs := Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, denied+"/", 1), mustExecRule(t, bin, 2)}}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "overlay")
	if err := e.SetCgroup(cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCgroupFiles(cg.id, []FileRule{
		{File: statID(t, denied), RuleID: 1, Dir: true},
		{File: statID(t, bin), RuleID: 2},
	}); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, bin).Run(); !killedBySIGKILL(err) {
		t.Fatalf("exec %s in the cgroup: %v, want killed by SIGKILL", bin, err)
	}

	merged := filepath.Join(base, "merged")
	opts := "lowerdir=" + denied + ",upperdir=" + filepath.Join(base, "upper") + ",workdir=" + filepath.Join(base, "work")
	cmd := command(cg, unshare, "--user", "--map-root-user", "--mount", "--propagation", "private",
		busybox, "sh", "-c", `mount -t overlay overlay -o "$1" "$2" && exec "$2/true"`, "sh", opts, merged)
	out, err := cmd.CombinedOutput()
	if err != nil && !killedBySIGKILL(err) {
		t.Fatalf("overlay of %s on %s in a user namespace: %v: %s", denied, merged, err, out)
	}
	if !killedBySIGKILL(err) {
		t.Errorf("exec %s/true, an overlay whose lower layer is the denied %s/: err=%v, want killed by SIGKILL", merged, denied, err)
	}
}
