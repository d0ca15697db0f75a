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
	tests := []struct {
		name  string
		rules []NetRule
		want  string
	}{
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

// More rules on one prefix than a value holds inline continue in chunks
// linked from it, numbered uniquely within the ruleset.
func TestPackPortRules(t *testing.T) {
	var rules []portRule
	for i := range 40 {
		rules = append(rules, portRule{lo: uint16(i), hi: uint16(i), ruleID: uint32(i + 1)})
	}
	seq := uint32(5)
	v, chunks := packPortRules(rules, 9, &seq)
	if int(v.N) != maxPortRules || v.More != 6 || len(chunks) != 2 || seq != 7 {
		t.Fatalf("inline n %d more %d, %d chunks, next seq %d", v.N, v.More, len(chunks), seq)
	}
	if c := chunks[0]; c.key != (holdfastChunkKey{Ruleset: 9, Seq: 5}) || c.value.N != 16 || c.value.Next != 7 || c.value.Rules[0].RuleId != 17 {
		t.Errorf("first chunk %+v", c)
	}
	if c := chunks[1]; c.key.Seq != 6 || c.value.N != 8 || c.value.Next != 0 || c.value.Rules[7].RuleId != 40 {
		t.Errorf("last chunk %+v", c)
	}
	v, chunks = packPortRules(rules[:3], 9, &seq)
	if v.N != 3 || v.More != 0 || chunks != nil || seq != 7 {
		t.Errorf("3 rules: n %d more %d chunks %v seq %d", v.N, v.More, chunks, seq)
	}
}

func TestLPMKeys(t *testing.T) {
	if k := key4(netip.MustParsePrefix("10.1.0.0/16")).(holdfastNet4Key); k.Prefixlen != 16 || k.Addr != [4]byte{10, 1, 0, 0} {
		t.Errorf("v4 key %+v", k)
	}
	if k := key6(netip.MustParsePrefix("::/0")).(holdfastNet6Key); k.Prefixlen != 0 {
		t.Errorf("v6 /0 key %+v", k)
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
	if ca.info.Flags != flagExec|flagExecDirs|flagConnect || ca.info.ExecRules != 2 || ca.info.Net4Prefixes != 2 {
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
