package bpf

import (
	"os"
	"path/filepath"
	"testing"
)

// The ELF interpreter's pass is cached (passes.h), so it must not outlive a
// rule that denies it, nor a rename of it into a denied directory.
func TestInterpreterPassVoidedByRulesAndRenames(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	base := resolved(t, t.TempDir())
	interp := filepath.Join(base, "lib", "interp")
	copyExecutable(t, staticBusybox(t), interp)
	fake := filepath.Join(base, "fake")
	writeInterpELF(t, interp, fake)
	denied := filepath.Join(base, "denied")
	if err := os.Mkdir(denied, 0o755); err != nil {
		t.Fatal(err)
	}
	rs := Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, denied+"/", 1)}}
	cg := env.cgroup(t, "c")
	enforce(t, e, cg, rs)
	run := func() error {
		cmd := command(cg, fake, "x")
		cmd.Args[0] = "true" // busybox runs the applet argv[0] names
		return cmd.Run()
	}
	for i := 0; i < 2; i++ { // the second run is served by the cached pass
		if err := run(); err != nil {
			t.Fatalf("run %d with an allowed interpreter: %v", i, err)
		}
	}

	// A rule naming the interpreter by identity, in the same ruleset.
	if err := e.SetCgroupFiles(cg.id, []FileRule{{File: statID(t, interp), RuleID: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := run(); !killedBySIGKILL(err) {
		t.Errorf("interpreter denied by identity after its pass was cached: %v, want SIGKILL", err)
	}
	if err := e.SetCgroupFiles(cg.id, nil); err != nil {
		t.Fatal(err)
	}
	if err := run(); err != nil {
		t.Fatalf("interpreter allowed again: %v", err)
	}

	// The interpreter moved below the denied directory keeps its dentry:
	// the rename must void the cached pass.
	moved := filepath.Join(denied, "interp")
	if err := os.Rename(interp, moved); err != nil {
		t.Fatal(err)
	}
	writeInterpELF(t, moved, fake)
	if err := run(); !killedBySIGKILL(err) {
		t.Errorf("interpreter renamed into a denied directory after its pass was cached: %v, want SIGKILL", err)
	}
}
