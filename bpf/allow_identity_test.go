package bpf

import (
	"path/filepath"
	"testing"
)

// An allow list also holds files by identity (an exact allow rule resolved
// in the container's root, e.g. /bin/sh -> /usr/bin/dash): such a file runs
// under any path, while a byte-identical copy does not; a deny of the same
// file wins.
func TestExecAllowedByFileIdentity(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	base := resolved(t, t.TempDir())
	trueBin := resolved(t, "/usr/bin/true")
	allowed := filepath.Join(base, "allowed-by-identity")
	copied := filepath.Join(base, "copy")
	both := filepath.Join(base, "denied-and-allowed")
	for _, p := range []string{allowed, copied, both} {
		copyExecutable(t, trueBin, p)
	}
	// The path list names none of them: only identities can let them run.
	rs := Ruleset{ID: 1, Exec: []ExecRule{allowRule(t, filepath.Join(base, "unrelated"), 1)}}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "c")
	sub := env.cgroup(t, "c/sub")
	if err := e.SetCgroup(cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCgroupFiles(cg.id, []FileRule{
		{File: statID(t, allowed), RuleID: 2, Allow: true},
		{File: statID(t, both), RuleID: 3, Allow: true},
		{File: statID(t, both), RuleID: 4},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testCgroup{cg, sub} {
		if err := command(c, allowed).Run(); err != nil {
			t.Errorf("file allowed by identity in %s: %v", c.dir, err)
		}
		if err := command(c, copied).Run(); !killedBySIGKILL(err) {
			t.Errorf("byte-identical copy of it in %s: want SIGKILL, got %v", c.dir, err)
		}
		if err := command(c, both).Run(); !killedBySIGKILL(err) {
			t.Errorf("file both allowed and denied by identity in %s: want SIGKILL, got %v", c.dir, err)
		}
	}
	files, err := e.CgroupFiles(cg.id)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].RuleID != 2 || !files[0].Allow || files[1].RuleID != 4 || files[1].Allow {
		t.Errorf("stored identity rules %+v, want allow rule 2 and deny rule 4", files)
	}
}
