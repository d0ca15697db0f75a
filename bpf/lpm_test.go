package bpf

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func rule(prefix string, lo, hi uint16, proto uint8, id uint32) NetRule {
	return NetRule{Prefix: netip.MustParsePrefix(prefix), PortLo: lo, PortHi: hi, Proto: proto, RuleID: id}
}

// entryString renders entries as "prefix:id,id" for comparison.
func entryStrings(entries []lpmEntry) []string {
	var out []string
	for _, e := range entries {
		var ids []string
		for _, r := range e.rules {
			ids = append(ids, fmt.Sprint(r.ruleID))
		}
		out = append(out, e.prefix.String()+":"+strings.Join(ids, ","))
	}
	return out
}

func TestFlattenNet(t *testing.T) {
	tests := []struct {
		name   string
		rules  []NetRule
		v4, v6 []string
	}{
		{
			name:  "nested prefixes carry the rules of every containing prefix, most specific first",
			rules: []NetRule{rule("10.0.0.0/8", 80, 80, ProtoTCP, 1), rule("10.1.0.0/16", 443, 443, ProtoTCP, 2), rule("10.1.2.0/24", 53, 53, ProtoUDP, 3)},
			v4:    []string{"10.0.0.0/8:1", "10.1.0.0/16:2,1", "10.1.2.0/24:3,2,1"},
		},
		{
			name:  "siblings do not inherit from each other",
			rules: []NetRule{rule("10.1.0.0/16", 1, 1, ProtoAny, 1), rule("10.2.0.0/16", 2, 2, ProtoAny, 2)},
			v4:    []string{"10.1.0.0/16:1", "10.2.0.0/16:2"},
		},
		{
			name:  "a /0 entry exists only when the ruleset has one, and covers all",
			rules: []NetRule{rule("0.0.0.0/0", 22, 22, ProtoTCP, 1), rule("192.0.2.1/32", 80, 80, ProtoTCP, 2)},
			v4:    []string{"0.0.0.0/0:1", "192.0.2.1/32:2,1"},
		},
		{
			name:  "host bits are masked and equal prefixes merge",
			rules: []NetRule{rule("10.1.2.3/16", 1, 1, ProtoAny, 1), rule("10.1.0.0/16", 2, 2, ProtoAny, 2)},
			v4:    []string{"10.1.0.0/16:1,2"},
		},
		{
			name:  "v4-mapped v6 prefixes become v4",
			rules: []NetRule{rule("::ffff:10.0.0.0/104", 1, 1, ProtoAny, 1), rule("10.1.0.0/16", 2, 2, ProtoAny, 2)},
			v4:    []string{"10.0.0.0/8:1", "10.1.0.0/16:2,1"},
		},
		{
			name:  "families are separate",
			rules: []NetRule{rule("::/0", 1, 1, ProtoAny, 1), rule("2001:db8::/32", 2, 2, ProtoAny, 2), rule("0.0.0.0/0", 3, 3, ProtoAny, 3)},
			v4:    []string{"0.0.0.0/0:3"},
			v6:    []string{"::/0:1", "2001:db8::/32:2,1"},
		},
		{
			name:  "a port rule repeated by a containing prefix is stored once",
			rules: []NetRule{rule("10.0.0.0/8", 80, 80, ProtoTCP, 1), rule("10.1.0.0/16", 80, 80, ProtoTCP, 2)},
			v4:    []string{"10.0.0.0/8:1", "10.1.0.0/16:2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v4, v6, err := flattenNet(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if got := entryStrings(v4); !slices.Equal(got, tc.v4) {
				t.Errorf("v4 %v, want %v", got, tc.v4)
			}
			if got := entryStrings(v6); !slices.Equal(got, tc.v6) {
				t.Errorf("v6 %v, want %v", got, tc.v6)
			}
		})
	}
}

func TestFlattenNetRefuses(t *testing.T) {
	var tooMany []NetRule
	for i := range maxPortRules {
		tooMany = append(tooMany, rule("10.0.0.0/8", uint16(i), uint16(i), ProtoAny, uint32(i)))
	}
	// 16 on the /8 fit; one more on a /24 inside it does not.
	if _, _, err := flattenNet(tooMany); err != nil {
		t.Fatalf("%d rules on one prefix: %v", maxPortRules, err)
	}
	tooMany = append(tooMany, rule("10.1.1.0/24", 999, 999, ProtoAny, 99))

	tests := []struct {
		name  string
		rules []NetRule
		want  string
	}{
		{"more than one entry holds", tooMany, "17 port rules apply to 10.1.1.0/24"},
		{"empty port range", []NetRule{rule("10.0.0.0/8", 90, 80, ProtoAny, 5)}, "port range 90-80 is empty"},
		{"unknown protocol", []NetRule{rule("10.0.0.0/8", 0, 0, 1, 5)}, "protocol 1 is not any, tcp or udp"},
		{"invalid prefix", []NetRule{{RuleID: 5}}, "invalid prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := flattenNet(tc.rules)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLPMKeys(t *testing.T) {
	e := lpmEntry{prefix: netip.MustParsePrefix("10.1.0.0/16")}
	if k := e.key4(7); k.Prefixlen != 48 || k.Ruleset != 7 || k.Addr != [4]byte{10, 1, 0, 0} {
		t.Errorf("v4 key %+v", k)
	}
	e6 := lpmEntry{prefix: netip.MustParsePrefix("::/0")}
	if k := e6.key6(7); k.Prefixlen != 32 || k.Ruleset != 7 {
		t.Errorf("v6 /0 key %+v: prefix length must still cover the ruleset", k)
	}
}

func TestCompileRulesetIsOrderIndependent(t *testing.T) {
	a := Ruleset{ID: 3,
		Exec:    []ExecRule{{Kind: ExecExact, Components: []string{"a"}, RuleID: 1}, {Kind: ExecPrefix, Components: []string{"b"}, RuleID: 2}},
		Connect: []NetRule{rule("10.0.0.0/8", 1, 1, ProtoAny, 1), rule("10.1.0.0/16", 2, 2, ProtoAny, 2)},
	}
	b := Ruleset{ID: 3,
		Exec:    []ExecRule{a.Exec[1], a.Exec[0]},
		Connect: []NetRule{a.Connect[1], a.Connect[0]},
	}
	ca, err := compileRuleset(a, testKey)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := compileRuleset(b, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca.info != cb.info {
		t.Errorf("same rules in another order compile differently: %+v vs %+v", ca.info, cb.info)
	}
	if ca.info.Flags != flagExec|flagConnect || ca.info.ExecRules != 2 || ca.info.Net4Prefixes != 2 {
		t.Errorf("info %+v", ca.info)
	}
	c := a
	c.Connect = []NetRule{rule("10.0.0.0/8", 1, 2, ProtoAny, 1)}
	cc, err := compileRuleset(c, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if cc.info.Digest == ca.info.Digest {
		t.Error("different rules, same digest")
	}
	if _, err := compileRuleset(Ruleset{Exec: []ExecRule{{Kind: 9}}}, testKey); err == nil || !strings.Contains(err.Error(), "unknown kind 9") {
		t.Errorf("unknown exec kind: %v", err)
	}
}
