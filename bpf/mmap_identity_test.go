package bpf

import (
	"os"
	"path/filepath"
	"testing"
)

// The loader route honours identity rules: a library denied only by its
// device and inode is killed when mapped through a hard link no path rule
// names, also from a sub-cgroup of the registered one.
func TestMmapDeniedByFileIdentity(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	mapfile := buildMapfile(t)
	base := resolved(t, t.TempDir())
	lib := filepath.Join(base, "lib", "libhf.so")
	copyExecutable(t, hostLibrary(t), lib)
	link := filepath.Join(base, "elsewhere", "libother.so")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(lib, link); err != nil {
		t.Fatal(err)
	}
	// A path rule on an unrelated file gives the cgroup exec checks; only
	// the identity rule names the library.
	if err := e.PutRuleset(Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, filepath.Join(base, "unrelated"), 1)}}); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "c")
	sub := env.cgroup(t, "c/sub")
	if err := e.SetCgroup(cg.id, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCgroupFiles(cg.id, []FileRule{{File: statID(t, lib), RuleID: 9}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testCgroup{cg, sub} {
		for _, how := range []string{"dlopen", "exec", "mprotect"} {
			if err := command(c, mapfile, how, link).Run(); !killedBySIGKILL(err) {
				t.Errorf("%s of a hard link of an identity-denied library in %s: want SIGKILL, got %v", how, c.dir, err)
			}
		}
	}
	if err := command(nil, mapfile, "dlopen", link).Run(); err != nil {
		t.Errorf("dlopen outside the cgroup: %v", err)
	}
}
