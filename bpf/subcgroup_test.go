package bpf

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// A process that moves below its container's cgroup stays under the
// container's rules, however deep it nests and whenever the sub-cgroup was
// made; a sub-cgroup registered on its own has its own rules.
func TestSubCgroupsInherit(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	id := resolved(t, "/usr/bin/id")
	trueBin := resolved(t, "/usr/bin/true")
	listener := harness.ListenTCP(t, "127.0.0.1:0")

	container := env.cgroup(t, "c")
	before := env.cgroup(t, "c/before") // exists when the container registers
	containerRules := Ruleset{ID: 1,
		Exec:    []ExecRule{mustExecRule(t, id, 11)},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortHi: 65535, RuleID: 12}}}
	ownRules := Ruleset{ID: 2, Exec: []ExecRule{mustExecRule(t, trueBin, 21)}}
	for _, rs := range []Ruleset{containerRules, ownRules} {
		if err := e.PutRuleset(rs); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.SetCgroup(container.id, containerRules.ID); err != nil {
		t.Fatal(err)
	}

	after := env.cgroup(t, "c/after")
	env.cgroup(t, "c/after/x")
	nested := env.cgroup(t, "c/after/x/y")
	// Deeper below the cgroup root than any registered cgroup may be.
	deep := container
	deepPath := "c"
	for level := 0; level < MaxCgroupLevel+8; level++ {
		deepPath += "/d"
		deep = env.cgroup(t, deepPath)
	}
	if n := strings.Count(strings.TrimPrefix(deep.dir, "/"), "/"); n < MaxCgroupLevel {
		t.Fatalf("deep cgroup %s is only %d levels down", deep.dir, n)
	}
	own := env.cgroup(t, "c/own")
	ownChild := env.cgroup(t, "c/own/child")
	if err := e.SetCgroup(own.id, ownRules.ID); err != nil {
		t.Fatal(err)
	}
	sibling := env.cgroup(t, "sibling")

	tests := []struct {
		name                 string
		cg                   *testCgroup
		idKilled, trueKilled bool
		connect              string
	}{
		{"the container's own cgroup", container, true, false, "EPERM"},
		{"sub-cgroup made before registration", before, true, false, "EPERM"},
		{"sub-cgroup made after registration", after, true, false, "EPERM"},
		{"nested sub-cgroup", nested, true, false, "EPERM"},
		{"below the deepest level a container may be registered at", deep, true, false, "EPERM"},
		{"registered sub-cgroup uses its own rules", own, false, true, "OK"},
		{"below a registered sub-cgroup, the nearest registration decides", ownChild, false, true, "OK"},
		{"unregistered sibling", sibling, false, false, "OK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, bin := range []struct {
				path   string
				killed bool
			}{{id, tc.idKilled}, {trueBin, tc.trueKilled}} {
				err := command(tc.cg, bin.path).Run()
				if got := killedBySIGKILL(err); got != bin.killed {
					t.Errorf("exec %s in %s: killed=%v (err %v), want killed=%v", bin.path, filepath.Base(tc.cg.dir), got, err, bin.killed)
				}
			}
			runNetCheck(t, tc.cg, netCheck{"dial", "tcp4", "-", listener.String(), tc.connect})
		})
	}

	// Unregistering the container lifts the rules from every sub-cgroup.
	if err := e.DeleteCgroup(container.id); err != nil {
		t.Fatal(err)
	}
	if err := command(nested, id).Run(); err != nil {
		t.Errorf("exec %s in a sub-cgroup after unregistering: %v", id, err)
	}
}
