package bpf

import (
	"errors"
	"testing"
)

// TestOpenMapsWritesWithoutPrograms writes a ruleset and a cgroup entry
// through OpenMaps after the loading enforcer closed, as a registrar does
// while no engine runs: the pinned programs enforce it, and an enforcer
// adopting the pins later finds both.
func TestOpenMapsWritesWithoutPrograms(t *testing.T) {
	env := newTestEnv(t)
	if _, err := OpenMaps(env.layout); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("OpenMaps before any install: %v, want ErrNotInstalled", err)
	}
	env.open(t).Close()

	m, err := OpenMaps(env.layout)
	if err != nil {
		t.Fatalf("OpenMaps: %v", err)
	}
	defer m.Close()
	if len(m.Controls()) != 0 {
		t.Errorf("a maps-only enforcer reports controls: %v", m.Controls())
	}
	cg := env.cgroup(t, "offline")
	rs := Ruleset{ID: 7, Exec: []ExecRule{mustExecRule(t, resolved(t, "/usr/bin/true"), 1)}}
	if err := m.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	if err := m.SetCgroup(cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, resolved(t, "/usr/bin/true")).Run(); !killedBySIGKILL(err) {
		t.Errorf("denied exec in a cgroup written through OpenMaps: %v, want SIGKILL", err)
	}
	if err := command(cg, resolved(t, "/usr/bin/env")).Run(); err != nil {
		t.Errorf("allowed exec in that cgroup: %v", err)
	}

	adopted := env.open(t)
	cgroups, err := adopted.Cgroups()
	if err != nil {
		t.Fatal(err)
	}
	if cgroups[cg.id] != rs.ID {
		t.Errorf("adopting enforcer: cgroup %d → ruleset %d, want %d", cg.id, cgroups[cg.id], rs.ID)
	}
}
