package bpf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// deepDir returns base extended with "d" components until a file in it has
// exactly depth components.
func deepDir(t *testing.T, base string, depth int) string {
	t.Helper()
	components, _, err := SplitPath(base)
	if err != nil {
		t.Fatal(err)
	}
	dir := base
	for n := len(components) + 1; n < depth; n++ {
		dir = filepath.Join(dir, "d")
	}
	return dir
}

func TestExecDenied(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)

	id := resolved(t, "/usr/bin/id")
	trueBin := resolved(t, "/usr/bin/true")
	base := resolved(t, t.TempDir())

	denied := filepath.Join(base, "denied")
	copyExecutable(t, trueBin, filepath.Join(denied, "true"))
	copyExecutable(t, trueBin, filepath.Join(denied, "sub", "true"))
	// Same name prefix, different directory: must not match "denied/".
	copyExecutable(t, trueBin, filepath.Join(base, "deniedx", "true"))
	// Names of 7, 8, 9, 16 and 17 bytes cover every word boundary of the hash.
	longNames := filepath.Join(base, "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq", "true")
	copyExecutable(t, trueBin, longNames)
	longNamesSibling := filepath.Join(base, "abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopr", "true")
	copyExecutable(t, trueBin, longNamesSibling)
	// Exactly MaxPathDepth components: the deepest exact rule there can be.
	deepest := filepath.Join(deepDir(t, filepath.Join(base, "deepest"), MaxPathDepth), "true")
	copyExecutable(t, trueBin, deepest)
	// Below a denied prefix but deeper than the walk keeps components for.
	tooDeep := filepath.Join(deepDir(t, filepath.Join(base, "deep"), MaxPathDepth+9), "true")
	copyExecutable(t, trueBin, tooDeep)

	link := filepath.Join(base, "id-link")
	if err := os.Symlink(id, link); err != nil {
		t.Fatal(err)
	}

	rs := Ruleset{ID: 7, Exec: []ExecRule{
		mustExecRule(t, id, 101),
		mustExecRule(t, denied+"/", 102),
		mustExecRule(t, longNames, 103),
		mustExecRule(t, deepest, 104),
		mustExecRule(t, filepath.Join(base, "deep")+"/", 105),
	}}
	cg := env.cgroup(t, "exec")
	enforce(t, e, cg, rs)

	tests := []struct {
		name   string
		path   string
		dir    string
		cg     *testCgroup
		killed bool
	}{
		{name: "exact", path: id, cg: cg, killed: true},
		{name: "outside the cgroup", path: id, cg: nil, killed: false},
		{name: "via symlink", path: link, cg: cg, killed: true},
		{name: "relative", path: "./id", dir: filepath.Dir(id), cg: cg, killed: true},
		{name: "doubled slashes", path: "/" + strings.ReplaceAll(id, "/", "//"), cg: cg, killed: true},
		{name: "dir prefix", path: filepath.Join(denied, "true"), cg: cg, killed: true},
		{name: "dir prefix subdir", path: filepath.Join(denied, "sub", "true"), cg: cg, killed: true},
		{name: "sibling with same name prefix", path: filepath.Join(base, "deniedx", "true"), cg: cg, killed: false},
		{name: "not covered", path: trueBin, cg: cg, killed: false},
		{name: "long names", path: longNames, cg: cg, killed: true},
		{name: "long names differing in the last byte", path: longNamesSibling, cg: cg, killed: false},
		{name: "deepest exact rule", path: deepest, cg: cg, killed: true},
		{name: "deeper than the walk keeps, below a prefix", path: tooDeep, cg: cg, killed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := command(tc.cg, tc.path)
			cmd.Dir = tc.dir
			out, err := cmd.Output()
			if tc.killed {
				if !killedBySIGKILL(err) {
					t.Fatalf("%s: want SIGKILL, got err=%v output=%q", tc.path, err, out)
				}
				if len(out) != 0 {
					t.Fatalf("%s: killed image wrote %q before dying", tc.path, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: want it to run, got %v", tc.path, err)
			}
			if tc.path == id && !strings.Contains(string(out), "uid=") {
				t.Fatalf("%s: unexpected output %q", tc.path, out)
			}
		})
	}

	counters, err := e.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counters.ExecDenied < 8 || counters.ExecChecked < counters.ExecDenied {
		t.Errorf("counters %+v: want at least the 8 kills above counted", counters)
	}
}

func TestExecRulesFollowCgroupRegistration(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	id := resolved(t, "/usr/bin/id")
	cg := env.cgroup(t, "exec")

	run := func() error { return command(cg, id).Run() }
	if err := run(); err != nil {
		t.Fatalf("unregistered cgroup: %v", err)
	}
	enforce(t, e, cg, Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, id, 1)}})
	if err := run(); !killedBySIGKILL(err) {
		t.Fatalf("registered cgroup: want SIGKILL, got %v", err)
	}
	// A ruleset with only connect rules leaves exec alone.
	enforce(t, e, cg, Ruleset{ID: 2, Connect: []NetRule{{Prefix: mustPrefix(t, "192.0.2.0/24"), PortHi: 65535}}})
	if err := run(); err != nil {
		t.Fatalf("connect-only ruleset: %v", err)
	}
	// "/" denies everything.
	enforce(t, e, cg, Ruleset{ID: 3, Exec: []ExecRule{mustExecRule(t, "/", 3)}})
	if err := command(cg, resolved(t, "/usr/bin/true")).Run(); !killedBySIGKILL(err) {
		t.Fatalf(`ruleset denying "/": want SIGKILL, got %v`, err)
	}
	if err := e.DeleteCgroup(cg.id); err != nil {
		t.Fatal(err)
	}
	if err := run(); err != nil {
		t.Fatalf("deleted cgroup: %v", err)
	}
}
