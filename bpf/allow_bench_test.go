package bpf

import (
	"path/filepath"
	"testing"
)

// benchAllowRuleset is benchRuleset with an allow list that the benchmark's
// binary is on only by its exact path, after every prefix missed: the
// longest allow check there is for it.
func benchAllowRuleset(id uint32, allowed string) Ruleset {
	rs := benchRuleset(id)
	for i, p := range []string{"/usr/local/bin/", "/opt/app/bin/", "/usr/lib/x/y", allowed} {
		components, prefix, _ := SplitPath(p)
		kind := ExecAllowExact
		if prefix {
			kind = ExecAllowPrefix
		}
		rs.Exec = append(rs.Exec, ExecRule{Kind: kind, Components: components, RuleID: uint32(30 + i)})
	}
	return rs
}

// BenchmarkForkExecAllowed is BenchmarkForkExec with an allow list in every
// ruleset, the benchmark's binary on it.
func BenchmarkForkExecAllowed(b *testing.B) {
	trueBin, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{benchNone, benchOne, benchMany} {
		b.Run(mode, func(b *testing.B) {
			env := newTestEnv(b)
			cg := env.cgroup(b, "bench")
			var e *Enforcer
			if mode != benchNone {
				e = env.open(b)
				putBenchRulesets(b, e, cg, mode, func(id uint32) Ruleset { return benchAllowRuleset(id, trueBin) })
			}
			measureProgram(b, e, progExecKill)
			for b.Loop() {
				if err := command(cg, trueBin).Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// putBenchRulesets registers cg with ruleset 1 and, for benchMany, 9,999
// other cgroups over 1,000 rulesets, as setupBench does.
func putBenchRulesets(b *testing.B, e *Enforcer, cg *testCgroup, mode string, build func(uint32) Ruleset) {
	if err := e.PutRuleset(build(1)); err != nil {
		b.Fatal(err)
	}
	if err := e.SetCgroup(cg.id, 1); err != nil {
		b.Fatal(err)
	}
	if mode == benchMany {
		putOtherRulesets(b, e, build, nil)
	}
}
