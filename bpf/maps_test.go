package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

func TestRulesetLifecycle(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	rs := Ruleset{ID: 10,
		Exec:    []ExecRule{{Kind: ExecExact, Components: []string{"a"}, RuleID: 1}},
		Connect: []NetRule{rule("10.0.0.0/8", 80, 80, ProtoTCP, 2), rule("2001:db8::/32", 0, 65535, ProtoAny, 3)},
	}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatalf("putting the same ruleset again: %v", err)
	}
	changed := rs
	changed.Exec = []ExecRule{{Kind: ExecExact, Components: []string{"b"}, RuleID: 1}}
	if err := e.PutRuleset(changed); !errors.Is(err, ErrRulesetConflict) {
		t.Fatalf("new content under a loaded ID: %v, want ErrRulesetConflict", err)
	}
	if err := e.SetCgroup(1, 99); !errors.Is(err, ErrRulesetNotLoaded) {
		t.Fatalf("SetCgroup to a missing ruleset: %v, want ErrRulesetNotLoaded", err)
	}
	if err := e.SetCgroup(1, rs.ID); err != nil {
		t.Fatal(err)
	}
	var cg holdfastCgroupRule
	if err := e.maps.CgroupRules.Lookup(uint64(1), &cg); err != nil || cg.Flags != flagExec|flagConnect || cg.Ruleset != rs.ID {
		t.Fatalf("cgroup entry %+v, %v: want ruleset %d with exec and connect flags", cg, err, rs.ID)
	}
	if got, err := e.Cgroups(); err != nil || len(got) != 1 || got[1] != rs.ID {
		t.Fatalf("Cgroups() = %v, %v", got, err)
	}

	// Leftovers of interrupted puts: rules without the rulesets entry.
	for _, id := range []uint32{77, 78} {
		if err := e.maps.ExecRules.Update(holdfastExecKey{Ruleset: id, Hash: 1}, holdfastExecValue{RuleId: 1}, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.Rulesets()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[rs.ID] != true || got[77] != false || got[78] != false {
		t.Fatalf("Rulesets() = %v, want %d complete, 77 and 78 partial", got, rs.ID)
	}
	if err := e.DeleteRuleset(77); err != nil {
		t.Fatalf("delete partial ruleset: %v", err)
	}
	// A new start that puts a partial ID again must not merge the stale rule.
	e.Close()
	e = env.open(t)
	if err := e.PutRuleset(Ruleset{ID: 78, Exec: []ExecRule{{Kind: ExecExact, Components: []string{"c"}, RuleID: 1}}}); err != nil {
		t.Fatal(err)
	}
	var v holdfastExecValue
	if err := e.maps.ExecRules.Lookup(holdfastExecKey{Ruleset: 78, Hash: 1}, &v); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("stale rule of ruleset 78 survived its put: %v", err)
	}
	if err := e.DeleteRuleset(78); err != nil {
		t.Fatal(err)
	}

	if err := e.DeleteRuleset(rs.ID); !errors.Is(err, ErrRulesetInUse) {
		t.Fatalf("delete a ruleset in use: %v, want ErrRulesetInUse", err)
	}
	if err := e.DeleteCgroup(1); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteCgroup(1); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("delete a missing cgroup: %v, want os.ErrNotExist", err)
	}
	if err := e.DeleteRuleset(rs.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteRuleset(rs.ID); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("delete a missing ruleset: %v, want os.ErrNotExist", err)
	}
	if got, err := e.Rulesets(); err != nil || len(got) != 0 {
		t.Fatalf("Rulesets() after deletes = %v, %v", got, err)
	}
	for name, m := range map[string]*ebpf.Map{"exec_rules": e.maps.ExecRules, "net4_rules": e.maps.Net4Rules, "net6_rules": e.maps.Net6Rules} {
		var key, value []byte
		if m.Iterate().Next(&key, &value) {
			t.Errorf("%s not empty after deleting every ruleset", name)
		}
	}
	// The ID is free again, for any content.
	if err := e.PutRuleset(changed); err != nil {
		t.Fatal(err)
	}
}

func TestPutRulesetRefusesBadInputClearly(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	err := e.PutRuleset(Ruleset{ID: 4, Connect: []NetRule{rule("10.0.0.0/8", 9, 1, ProtoAny, 1)}})
	if err == nil || err.Error() != "put ruleset 4: connect rule 0 (rule id 1): port range 9-1 is empty" {
		t.Fatalf("got %v", err)
	}
	if got, err := e.Rulesets(); err != nil || len(got) != 0 {
		t.Fatalf("a refused ruleset left %v (%v)", got, err)
	}
}
