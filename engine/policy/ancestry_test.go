package policy

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf"
)

func TestCompileAncestryScoped(t *testing.T) {
	rs, set := compileOne(t, `{events: {exec: true},
  exec: {deny: [/usr/bin/wget, {path: /bin/sh, from: {ancestors: [/usr/sbin/nginx, //usr/bin/php]}}]},
  network: {connect: {deny: [{cidr: 169.254.169.254, from: {ancestors: [/usr/bin/php]}}]}}}`)
	want := bpf.Ruleset{
		ID: 7,
		Exec: []bpf.ExecRule{
			{Kind: bpf.ExecExact, Components: []string{"usr", "bin", "wget"}, RuleID: 1},
			{Kind: bpf.ExecExact, Components: []string{"bin", "sh"}, RuleID: 2, From: 0b11},
		},
		Connect:    []bpf.NetRule{{Prefix: netip.MustParsePrefix("169.254.169.254/32"), PortHi: 65535, RuleID: 3, From: 0b10}},
		Ancestors:  [][]string{{"usr", "sbin", "nginx"}, {"usr", "bin", "php"}},
		ExecEvents: true,
	}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("Compile =\n %+v\nwant\n %+v", rs, want)
	}
	info, ok := set.Rule(2)
	if !ok || info.Field != "spec.exec.deny[1]" || info.Describe() != "/bin/sh from ancestors /usr/sbin/nginx,/usr/bin/php" {
		t.Errorf("Rule(2) = %+v (%q)", info, info.Describe())
	}
	// The canonical form keeps plain entries plain and parses back the same.
	p := set.Policies()[0]
	again := mustParse(t, "again.yaml", string(p.Canonical()))
	if again[0].Digest() != p.Digest() {
		t.Errorf("canonical form %s parses to another digest", p.Canonical())
	}
}

// Two policies naming more ancestor binaries than a process has class bits
// cannot be enforced together.
func TestCompileTooManyAncestors(t *testing.T) {
	// a names /opt/a0 ... /opt/a7, the most one ruleset holds; b one more.
	var ancestors []string
	for i := range bpf.MaxAncestorClasses {
		ancestors = append(ancestors, fmt.Sprintf("/opt/a%d", i))
	}
	a := mustParse(t, "a.yaml", doc("a", `{exec: {deny: [{path: /bin/sh, from: {ancestors: [`+strings.Join(ancestors, ", ")+`]}}]}}`))
	b := mustParse(t, "b.yaml", doc("b", `{exec: {deny: [{path: /bin/sh, from: {ancestors: [/opt/b]}}]}}`))
	if _, err := mustSet(t, a...).Compile(1, a); err != nil {
		t.Fatalf("Compile of %d ancestor binaries: %v", len(ancestors), err)
	}
	set := mustSet(t, append(a, b...)...)
	if _, err := set.Compile(1, append(a, b...)); err == nil {
		t.Fatal("Compile of 9 ancestor binaries succeeded")
	}
}

func TestAncestryValidationErrors(t *testing.T) {
	tests := []struct {
		name, spec string
		want       []string
	}{
		{"no ancestors", `{exec: {deny: [{path: /bin/sh, from: {}}]}}`,
			[]string{`p.yaml: spec.exec.deny[0].from.ancestors: required`}},
		{"relative ancestor", `{exec: {deny: [{path: /bin/sh, from: {ancestors: [nginx]}}]}}`,
			[]string{`p.yaml: spec.exec.deny[0].from.ancestors[0]: path "nginx": must be absolute`}},
		{"directory ancestor", `{network: {connect: {deny: [{cidr: 10.0.0.0/8, from: {ancestors: [/usr/sbin/]}}]}}}`,
			[]string{`p.yaml: spec.network.connect.deny[0].from.ancestors[0]: "/usr/sbin/": an ancestor is one binary`}},
		{"bad path in a mapping", `{exec: {deny: [{path: sh, from: {ancestors: [/x]}}]}}`,
			[]string{`p.yaml: spec.exec.deny[0].path: path "sh": must be absolute`}},
		{"unknown field", `{exec: {deny: [{path: /bin/sh, form: {ancestors: [/x]}}]}}`,
			[]string{`p.yaml: spec.exec.deny[0]: unknown field "form"`}},
		{"events not a boolean", `{events: {exec: "yes"}}`,
			[]string{`p.yaml: spec.events.exec: must be true or false, got string "yes"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Parse("p.yaml", []byte(doc("p", tt.spec)))
			if ps != nil {
				t.Errorf("got %d policies with an error", len(ps))
			}
			checkErrorLines(t, err, tt.want...)
		})
	}
}

func TestAncestorWarnings(t *testing.T) {
	ps := mustParse(t, "w.yaml", doc("w", `{exec: {deny: [{path: /usr/bin/id, from: {ancestors: [/bin/sh, /usr/sbin/nginx]}}]},
  network: {connect: {deny: [{cidr: 10.0.0.0/8, from: {ancestors: [/bin/busybox]}}]}}}`))
	got := ps[0].Warnings()
	want := []string{
		"w: spec.exec.deny[0].from.ancestors[0] /bin/sh: on merged-/usr images the binary runs as /usr/bin/sh",
		"w: spec.network.connect.deny[0].from.ancestors[0] /bin/busybox: on merged-/usr images the binary runs as /usr/bin/busybox",
		"w: spec.network.connect.deny[0].from.ancestors[0] /bin/busybox: a multi-call binary",
	}
	if len(got) != len(want) {
		t.Fatalf("warnings %q, want %d", got, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %d: %q, want it to start with %q", i, got[i], want[i])
		}
	}
}
