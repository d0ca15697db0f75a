package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf"
)

// compileOne compiles a set holding only the policy with this spec.
func compileOne(t *testing.T, spec string) (bpf.Ruleset, *Set) {
	t.Helper()
	ps := mustParse(t, "c.yaml", doc("p", spec))
	set := mustSet(t, ps...)
	rs, err := set.Compile(7, ps)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rs, set
}

func TestCompileExec(t *testing.T) {
	tests := []struct {
		path string
		want bpf.ExecRule
		text string
	}{
		{"/bin/sh", bpf.ExecRule{Kind: bpf.ExecExact, Components: []string{"bin", "sh"}, RuleID: 1}, "/bin/sh"},
		{"//bin//sh", bpf.ExecRule{Kind: bpf.ExecExact, Components: []string{"bin", "sh"}, RuleID: 1}, "/bin/sh"},
		{"/tmp/", bpf.ExecRule{Kind: bpf.ExecPrefix, Components: []string{"tmp"}, RuleID: 1}, "/tmp/"},
		{"/usr/local/bin//", bpf.ExecRule{Kind: bpf.ExecPrefix, Components: []string{"usr", "local", "bin"}, RuleID: 1}, "/usr/local/bin/"},
		{"/", bpf.ExecRule{Kind: bpf.ExecPrefix, Components: nil, RuleID: 1}, "/"},
		{"/opt/a-name-longer-than-eight-bytes", bpf.ExecRule{Kind: bpf.ExecExact, Components: []string{"opt", "a-name-longer-than-eight-bytes"}, RuleID: 1}, "/opt/a-name-longer-than-eight-bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rs, set := compileOne(t, `{exec: {deny: ["`+tt.path+`"]}}`)
			want := bpf.Ruleset{ID: 7, Exec: []bpf.ExecRule{tt.want}}
			if !reflect.DeepEqual(rs, want) {
				t.Errorf("Compile = %+v, want %+v", rs, want)
			}
			info, ok := set.Rule(1)
			wantInfo := RuleInfo{ID: 1, Policy: "p", File: "c.yaml", Field: "spec.exec.deny[0]", Kind: KindExec, Text: tt.text, Mode: ModeEnforce}
			if !ok || info != wantInfo {
				t.Errorf("Rule(1) = %+v, %t; want %+v", info, ok, wantInfo)
			}
		})
	}
}

func TestCompileConnect(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name  string
		dest  string
		want  []bpf.NetRule
		texts []string
	}{
		{"host, any port and protocol", `{cidr: 169.254.169.254/32}`,
			[]bpf.NetRule{{Prefix: pfx("169.254.169.254/32"), PortLo: 0, PortHi: 65535, Proto: bpf.ProtoAny, RuleID: 1}},
			[]string{"169.254.169.254/32"}},
		{"host bits are cleared", `{cidr: 10.1.2.3/8}`,
			[]bpf.NetRule{{Prefix: pfx("10.0.0.0/8"), PortHi: 65535, RuleID: 1}},
			[]string{"10.0.0.0/8"}},
		{"bare address is one host", `{cidr: 10.1.2.3}`,
			[]bpf.NetRule{{Prefix: pfx("10.1.2.3/32"), PortHi: 65535, RuleID: 1}},
			[]string{"10.1.2.3/32"}},
		{"IPv6", `{cidr: "2001:db8::1/32", protocol: udp}`,
			[]bpf.NetRule{{Prefix: pfx("2001:db8::/32"), PortHi: 65535, Proto: bpf.ProtoUDP, RuleID: 1}},
			[]string{"2001:db8::/32 udp"}},
		{"IPv4-mapped IPv6 becomes IPv4", `{cidr: "::ffff:169.254.169.254/128"}`,
			[]bpf.NetRule{{Prefix: pfx("169.254.169.254/32"), PortHi: 65535, RuleID: 1}},
			[]string{"169.254.169.254/32"}},
		{"one rule per port range", `{cidr: 0.0.0.0/0, ports: ["25", "6660-6669"], protocol: tcp}`,
			[]bpf.NetRule{
				{Prefix: pfx("0.0.0.0/0"), PortLo: 25, PortHi: 25, Proto: bpf.ProtoTCP, RuleID: 1},
				{Prefix: pfx("0.0.0.0/0"), PortLo: 6660, PortHi: 6669, Proto: bpf.ProtoTCP, RuleID: 2},
			},
			[]string{"0.0.0.0/0 tcp 25", "0.0.0.0/0 tcp 6660-6669"}},
		{"unquoted port, upper-case protocol, one-port range", `{cidr: 10.0.0.0/8, ports: [53, "443-443", 65535], protocol: UDP}`,
			[]bpf.NetRule{
				{Prefix: pfx("10.0.0.0/8"), PortLo: 53, PortHi: 53, Proto: bpf.ProtoUDP, RuleID: 1},
				{Prefix: pfx("10.0.0.0/8"), PortLo: 443, PortHi: 443, Proto: bpf.ProtoUDP, RuleID: 2},
				{Prefix: pfx("10.0.0.0/8"), PortLo: 65535, PortHi: 65535, Proto: bpf.ProtoUDP, RuleID: 3},
			},
			[]string{"10.0.0.0/8 udp 53", "10.0.0.0/8 udp 443", "10.0.0.0/8 udp 65535"}},
		{"ports with any protocol", `{cidr: 10.0.0.0/8, ports: ["22"], protocol: any}`,
			[]bpf.NetRule{{Prefix: pfx("10.0.0.0/8"), PortLo: 22, PortHi: 22, RuleID: 1}},
			[]string{"10.0.0.0/8 any 22"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, set := compileOne(t, `{network: {connect: {deny: [`+tt.dest+`]}}}`)
			if !reflect.DeepEqual(rs.Connect, tt.want) || len(rs.Exec) != 0 {
				t.Errorf("Compile = %+v, want connect rules %+v", rs, tt.want)
			}
			for i, text := range tt.texts {
				info, ok := set.Rule(uint32(i + 1))
				if !ok || info.Text != text || info.Kind != KindConnect {
					t.Errorf("Rule(%d) = %+v, %t; want connect %q", i+1, info, ok, text)
				}
			}
		})
	}
}

func TestCompileUnion(t *testing.T) {
	ps := mustParse(t, "u.yaml",
		// IDs: a 1-3, b 4-8, c 9.
		doc("b", `{exec: {deny: [/bin/sh, /tmp/, /tmp]}, network: {connect: {deny: [{cidr: 169.254.169.254/32}, {cidr: 10.0.0.0/8, ports: [22], protocol: tcp}]}}}`)+"---\n"+
			doc("a", `{exec: {deny: [/bin/sh, //usr/bin/wget]}, network: {connect: {deny: [{cidr: 169.254.169.254}]}}}`)+"---\n"+
			doc("c", `{network: {connect: {deny: [{cidr: 10.0.0.0/8, ports: [22], protocol: udp}]}}}`))
	set := mustSet(t, ps...)
	a, _ := set.Policy("a")
	b, _ := set.Policy("b")
	c, _ := set.Policy("c")
	h := func(c ...string) []string { return c }
	pfx := netip.MustParsePrefix

	want := bpf.Ruleset{
		ID: 9,
		Exec: []bpf.ExecRule{
			{Kind: bpf.ExecExact, Components: h("bin", "sh"), RuleID: 1}, // a's, b's duplicate dropped
			{Kind: bpf.ExecExact, Components: h("usr", "bin", "wget"), RuleID: 2},
			{Kind: bpf.ExecPrefix, Components: h("tmp"), RuleID: 5},
			{Kind: bpf.ExecExact, Components: h("tmp"), RuleID: 6}, // same path, other kind: kept
		},
		Connect: []bpf.NetRule{
			{Prefix: pfx("169.254.169.254/32"), PortHi: 65535, RuleID: 3}, // b's duplicate (7) dropped
			{Prefix: pfx("10.0.0.0/8"), PortLo: 22, PortHi: 22, Proto: bpf.ProtoTCP, RuleID: 8},
			{Prefix: pfx("10.0.0.0/8"), PortLo: 22, PortHi: 22, Proto: bpf.ProtoUDP, RuleID: 9}, // other protocol: kept
		},
	}
	for name, input := range map[string][]*Policy{
		"sorted":          {a, b, c},
		"reversed":        {c, b, a},
		"with duplicates": {b, a, c, a, b},
	} {
		got, err := set.Compile(9, input)
		if err != nil {
			t.Fatalf("%s: Compile: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Compile =\n%+v\nwant\n%+v", name, got, want)
		}
	}

	// Alone, b keeps its own IDs, including the one a shadowed in the union.
	got, err := set.Compile(2, []*Policy{b})
	if err != nil {
		t.Fatal(err)
	}
	wantB := bpf.Ruleset{
		ID: 2,
		Exec: []bpf.ExecRule{
			{Kind: bpf.ExecExact, Components: h("bin", "sh"), RuleID: 4},
			{Kind: bpf.ExecPrefix, Components: h("tmp"), RuleID: 5},
			{Kind: bpf.ExecExact, Components: h("tmp"), RuleID: 6},
		},
		Connect: []bpf.NetRule{
			{Prefix: pfx("169.254.169.254/32"), PortHi: 65535, RuleID: 7},
			{Prefix: pfx("10.0.0.0/8"), PortLo: 22, PortHi: 22, Proto: bpf.ProtoTCP, RuleID: 8},
		},
	}
	if !reflect.DeepEqual(got, wantB) {
		t.Errorf("Compile(b) =\n%+v\nwant\n%+v", got, wantB)
	}
}

func TestCompileRefusesForeignPolicy(t *testing.T) {
	set := mustSet(t, mustParse(t, "a.yaml", doc("a", "{exec: {deny: [/bin/sh]}}"))...)
	// Same name, different parse: its rules have no IDs in this set.
	stranger := mustParse(t, "a2.yaml", doc("a", "{exec: {deny: [/bin/sh]}}"))[0]
	_, err := set.Compile(4, []*Policy{stranger})
	if err == nil || err.Error() != `compile ruleset 4: policy "a" is not in this set` {
		t.Errorf("err = %v, want a not-in-this-set error", err)
	}
	if _, err := set.Compile(4, []*Policy{nil}); err == nil {
		t.Error("Compile accepted a nil policy")
	}
}

func TestRuleIDsAreDeterministic(t *testing.T) {
	files := []string{
		doc("web", `{exec: {deny: [/bin/sh, /usr/bin/wget]}, network: {connect: {deny: [{cidr: 0.0.0.0/0, ports: [25, "6660-6669"]}]}}}`),
		doc("base", `{exec: {deny: [/tmp/]}}`),
		doc("net", `{network: {connect: {deny: [{cidr: 169.254.169.254/32}]}}}`),
	}
	build := func(order ...int) *Set {
		var ps []*Policy
		for _, i := range order {
			ps = append(ps, mustParse(t, "f.yaml", files[i])...)
		}
		return mustSet(t, ps...)
	}
	table := func(s *Set) string {
		var b strings.Builder
		for id := uint32(0); ; id++ {
			info, ok := s.Rule(id)
			if id == 0 {
				if ok {
					t.Fatal("rule ID 0 exists; 0 must stay free")
				}
				continue
			}
			if !ok {
				return b.String()
			}
			if info.ID != id {
				t.Fatalf("Rule(%d).ID = %d", id, info.ID)
			}
			b.WriteString(info.Policy + " " + info.Field + " " + info.Text + "\n")
		}
	}
	want := `base spec.exec.deny[0] /tmp/
net spec.network.connect.deny[0] 169.254.169.254/32
web spec.exec.deny[0] /bin/sh
web spec.exec.deny[1] /usr/bin/wget
web spec.network.connect.deny[0].ports[0] 0.0.0.0/0 any 25
web spec.network.connect.deny[0].ports[1] 0.0.0.0/0 any 6660-6669
`
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		if got := table(build(order...)); got != want {
			t.Errorf("order %v: rules\n%s\nwant\n%s", order, got, want)
		}
	}

	s := build(0, 1, 2)
	web, _ := s.Policy("web")
	if got := s.Rules(web); len(got) != 4 || got[0].ID != 3 || got[3].ID != 6 || got[3].Text != "0.0.0.0/0 any 6660-6669" {
		t.Errorf("Rules(web) = %+v, want IDs 3-6", got)
	}
	stranger := mustParse(t, "f.yaml", files[0])[0]
	if got := s.Rules(stranger); got != nil {
		t.Errorf("Rules of a policy outside the set = %+v, want nil", got)
	}
}

func TestCompileExecAllow(t *testing.T) {
	rs, set := compileOne(t, `{exec: {deny: [/usr/bin/su], allow: [//usr/bin//, /opt/app/run, /]}, network: {connect: {deny: [{cidr: 10.0.0.0/8}]}}}`)
	want := bpf.Ruleset{ID: 7,
		Exec: []bpf.ExecRule{
			{Kind: bpf.ExecExact, Components: []string{"usr", "bin", "su"}, RuleID: 1},
			{Kind: bpf.ExecAllowPrefix, Components: []string{"usr", "bin"}, RuleID: 2},
			{Kind: bpf.ExecAllowExact, Components: []string{"opt", "app", "run"}, RuleID: 3},
			{Kind: bpf.ExecAllowPrefix, Components: nil, RuleID: 4},
		},
		Connect: []bpf.NetRule{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortHi: 65535, RuleID: 5}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Errorf("Compile =\n%+v\nwant\n%+v", rs, want)
	}
	// Deny rules first, then allow rules, then connect rules, in file order.
	for id, w := range map[uint32]RuleInfo{
		1: {Field: "spec.exec.deny[0]", Kind: KindExec, Text: "/usr/bin/su"},
		2: {Field: "spec.exec.allow[0]", Kind: KindExecAllow, Text: "/usr/bin/"},
		3: {Field: "spec.exec.allow[1]", Kind: KindExecAllow, Text: "/opt/app/run"},
		4: {Field: "spec.exec.allow[2]", Kind: KindExecAllow, Text: "/"},
		5: {Field: "spec.network.connect.deny[0]", Kind: KindConnect, Text: "10.0.0.0/8"},
	} {
		w.ID, w.Policy, w.File, w.Mode = id, "p", "c.yaml", ModeEnforce
		if got, ok := set.Rule(id); !ok || got != w {
			t.Errorf("Rule(%d) = %+v, %t; want %+v", id, got, ok, w)
		}
	}
	p, _ := set.Policy("p")
	if got := p.Spec.Exec.Allow; !reflect.DeepEqual(got, []string{"/usr/bin/", "/opt/app/run", "/"}) {
		t.Errorf("canonical allow list %q", got)
	}
	again := mustParse(t, "c.yaml", string(p.Canonical()))
	if again[0].Digest() != p.Digest() {
		t.Error("canonical form of a policy with an allow list parses to another digest")
	}
}

// An allow list is a property of the container's ruleset, not of one
// policy: the union of every selecting policy's list, with every deny.
func TestCompileAllowUnion(t *testing.T) {
	ps := mustParse(t, "u.yaml",
		// IDs: a 1-2, b 3-5, c 6.
		doc("a", `{exec: {allow: [/usr/bin/, /bin/sh]}}`)+"---\n"+
			doc("b", `{exec: {deny: [/usr/bin/wget], allow: [/usr/bin/, /opt/app]}}`)+"---\n"+
			doc("c", `{exec: {deny: [/usr/bin/curl]}}`))
	set := mustSet(t, ps...)
	a, _ := set.Policy("a")
	b, _ := set.Policy("b")
	c, _ := set.Policy("c")

	allowOf := func(rs bpf.Ruleset) (allow, deny []string) {
		for _, r := range rs.Exec {
			text := "/" + strings.Join(r.Components, "/")
			if r.Allow() {
				allow = append(allow, text)
			} else {
				deny = append(deny, text)
			}
		}
		return allow, deny
	}
	tests := []struct {
		name       string
		policies   []*Policy
		allow      []string
		deny       []string
		allowRules []uint32
	}{
		// The shared /usr/bin/ is kept once, under a's ID.
		{"a and b", []*Policy{b, a}, []string{"/usr/bin", "/bin/sh", "/opt/app"}, []string{"/usr/bin/wget"}, []uint32{1, 2, 5}},
		// c has no allow list, but a's still holds for the container.
		{"a and c", []*Policy{c, a}, []string{"/usr/bin", "/bin/sh"}, []string{"/usr/bin/curl"}, []uint32{1, 2}},
		{"c alone", []*Policy{c}, nil, []string{"/usr/bin/curl"}, nil},
		{"all", []*Policy{a, b, c}, []string{"/usr/bin", "/bin/sh", "/opt/app"}, []string{"/usr/bin/wget", "/usr/bin/curl"}, []uint32{1, 2, 5}},
	}
	for _, tt := range tests {
		rs, err := set.Compile(1, tt.policies)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		allow, deny := allowOf(rs)
		if !reflect.DeepEqual(allow, tt.allow) || !reflect.DeepEqual(deny, tt.deny) {
			t.Errorf("%s: allow %q deny %q, want allow %q deny %q", tt.name, allow, deny, tt.allow, tt.deny)
		}
		var ids []uint32
		for _, r := range rs.Exec {
			if r.Allow() {
				ids = append(ids, r.RuleID)
			}
		}
		if !reflect.DeepEqual(ids, tt.allowRules) {
			t.Errorf("%s: allow rule IDs %v, want %v", tt.name, ids, tt.allowRules)
		}
	}
	// Same path allowed and denied: both rules are kept; the kernel's
	// deny check runs first, so deny wins.
	rs, _ := compileOne(t, `{exec: {deny: [/opt/app], allow: [/opt/app]}}`)
	allow, deny := allowOf(rs)
	if !reflect.DeepEqual(allow, []string{"/opt/app"}) || !reflect.DeepEqual(deny, []string{"/opt/app"}) {
		t.Errorf("allow and deny of one path: %+v", rs.Exec)
	}
}
