package policy

import (
	"reflect"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf"
)

func TestModeParsed(t *testing.T) {
	for _, tc := range []struct {
		spec, want string
	}{
		{`{exec: {deny: [/bin/sh]}}`, ModeEnforce},
		{`{mode: enforce, exec: {deny: [/bin/sh]}}`, ModeEnforce},
		{`{mode: audit, exec: {deny: [/bin/sh]}}`, ModeAudit},
	} {
		p := mustParse(t, "m.yaml", doc("p", tc.spec))[0]
		if p.Mode() != tc.want {
			t.Errorf("%s: mode %q, want %q", tc.spec, p.Mode(), tc.want)
		}
	}
	_, err := Parse("m.yaml", []byte(doc("p", `{mode: Audit, exec: {deny: [/bin/sh]}}`)))
	checkErrorLines(t, err, `m.yaml: spec.mode: "Audit" is not a mode (want "enforce" or "audit")`)
}

// A mode switch keeps the rules digests, so rule IDs and ruleset keys stay
// and only the rules' modes change in the kernel; the digests, which tell
// a changed set, change.
func TestModeOnlyInDigests(t *testing.T) {
	enforce := mustParse(t, "m.yaml", doc("p", `{exec: {deny: [/bin/sh]}}`))[0]
	audit := mustParse(t, "m.yaml", doc("p", `{mode: audit, exec: {deny: [/bin/sh]}}`))[0]
	if enforce.RulesDigest() != audit.RulesDigest() || enforce.Digest() == audit.Digest() {
		t.Errorf("rules digests %s, %s: want equal; digests %s, %s: want different",
			enforce.RulesDigest(), audit.RulesDigest(), enforce.Digest(), audit.Digest())
	}
	es, as := mustSet(t, enforce), mustSet(t, audit)
	if es.RulesDigest() != as.RulesDigest() || es.Digest() == as.Digest() {
		t.Error("set digests: want rules digests equal and digests different")
	}
	if string(enforce.Canonical()) == string(audit.Canonical()) {
		t.Error("canonical form lost the mode")
	}
}

func TestCompileModes(t *testing.T) {
	// "a" audits, "b" enforces: b's rules win equal rules although "a"
	// sorts first and has the lower IDs.
	a := mustParse(t, "a.yaml", doc("a", `{mode: audit, exec: {deny: [/bin/sh, /usr/bin/wget], allow: [/usr/]}, network: {connect: {deny: [{cidr: 10.0.0.0/8}]}, sockets: {deny: [raw]}, bind: {deny: [{ports: ["80"]}]}}}`))[0]
	b := mustParse(t, "b.yaml", doc("b", `{exec: {deny: [/bin/sh]}, network: {connect: {deny: [{cidr: 10.0.0.0/8}]}}}`))[0]
	set := mustSet(t, a, b)

	rs, err := set.Compile(3, []*Policy{a, b})
	if err != nil {
		t.Fatal(err)
	}
	// a: 1 /bin/sh, 2 /usr/bin/wget, 3 allow /usr/, 4 connect, 5 socket raw,
	// 6 bind; b: 7 /bin/sh, 8 connect.
	wantExec := []bpf.ExecRule{
		{Kind: bpf.ExecExact, Components: []string{"bin", "sh"}, RuleID: 7},
		{Kind: bpf.ExecExact, Components: []string{"usr", "bin", "wget"}, RuleID: 2, Audit: true},
		{Kind: bpf.ExecAllowPrefix, Components: []string{"usr"}, RuleID: 3, Audit: true},
	}
	if !reflect.DeepEqual(rs.Exec, wantExec) {
		t.Errorf("exec rules\n got %+v\nwant %+v", rs.Exec, wantExec)
	}
	if len(rs.Connect) != 1 || rs.Connect[0].RuleID != 8 || rs.Connect[0].Audit {
		t.Errorf("connect rules %+v: want b's enforcing rule 8 only", rs.Connect)
	}
	for _, s := range rs.Sockets {
		if s.RuleID != 5 || !s.Audit {
			t.Errorf("socket rule %+v: want a's audited rule 5", s)
		}
	}
	if len(rs.Bind) != 1 || rs.Bind[0].RuleID != 6 || !rs.Bind[0].Audit {
		t.Errorf("bind rules %+v: want a's audited rule 6", rs.Bind)
	}
	// Only "a" has an allow list: it audits. "b" enforces exec rules, so a
	// path that cannot be resolved is refused.
	if !rs.AuditNotAllowed || rs.AuditUnresolved {
		t.Errorf("AuditNotAllowed %v, AuditUnresolved %v; want true, false", rs.AuditNotAllowed, rs.AuditUnresolved)
	}
	if info, _ := set.Rule(2); info.Mode != ModeAudit {
		t.Errorf("rule 2 mode %q, want audit", info.Mode)
	}

	// An enforcing allow list is not widened by an audited one.
	c := mustParse(t, "c.yaml", doc("c", `{exec: {allow: [/bin/]}}`))[0]
	set = mustSet(t, a, c)
	rs, err = set.Compile(4, []*Policy{a, c})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs.Exec {
		if r.Allow() && r.Audit {
			t.Errorf("audited allow rule %+v compiled beside an enforcing allow list", r)
		}
	}
	if rs.AuditNotAllowed {
		t.Error("an enforcing allow list audits")
	}
}

func TestMixedModes(t *testing.T) {
	a := mustParse(t, "a.yaml", doc("a", `{mode: audit, exec: {deny: [/bin/sh]}}`))[0]
	a2 := mustParse(t, "a2.yaml", doc("a2", `{mode: audit, exec: {deny: [/bin/ls]}}`))[0]
	b := mustParse(t, "b.yaml", doc("b", `{exec: {deny: [/bin/sh]}}`))[0]
	if got := MixedModes([]*Policy{a, a2}); got != "" {
		t.Errorf("all audit: %q, want empty", got)
	}
	if got := MixedModes([]*Policy{b}); got != "" {
		t.Errorf("all enforce: %q, want empty", got)
	}
	if got := MixedModes([]*Policy{b, a}); got != "a=audit,b=enforce" {
		t.Errorf("mixed: %q", got)
	}
}
