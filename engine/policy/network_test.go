package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf"
)

func TestSocketAndBindRules(t *testing.T) {
	ps := mustParse(t, "p.yaml", doc("p", `{network: {
		sockets: {deny: [RAW, icmp, sctp, packet]},
		bind: {deny: [{ports: [8000-8099, 22], protocol: TCP}, {}]}}}`))
	p := ps[0]
	if got := p.Spec.Network.Sockets.Deny; !slices.Equal(got, []string{"raw", "icmp", "sctp", "packet"}) {
		t.Errorf("canonical socket kinds %v", got)
	}
	if b := p.Spec.Network.Bind.Deny; b[0].Protocol != "tcp" || b[1].Protocol != "any" {
		t.Errorf("canonical bind rules %+v", b)
	}
	s := mustSet(t, p)
	var texts []string
	for _, r := range s.Rules(p) {
		texts = append(texts, r.Kind+": "+r.Text+" @ "+r.Field)
	}
	want := []string{
		"socket: socket raw @ spec.network.sockets.deny[0]",
		"socket: socket icmp @ spec.network.sockets.deny[1]",
		"socket: socket sctp @ spec.network.sockets.deny[2]",
		"socket: socket packet @ spec.network.sockets.deny[3]",
		"bind: bind tcp 8000-8099 @ spec.network.bind.deny[0].ports[0]",
		"bind: bind tcp 22 @ spec.network.bind.deny[0].ports[1]",
		"bind: bind any @ spec.network.bind.deny[1]",
	}
	if !slices.Equal(texts, want) {
		t.Errorf("rules\n%s\nwant\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
	rs, err := s.Compile(1, []*Policy{p})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Sockets) != 7 || rs.Sockets[6] != (bpf.SocketRule{Family: 17, Type: bpf.SocketAny, Protocol: bpf.SocketAny, RuleID: 4}) || rs.Sockets[0] != (bpf.SocketRule{Family: 2, Type: 3, Protocol: bpf.SocketAny, RuleID: 1}) {
		t.Errorf("socket rules %+v", rs.Sockets)
	}
	wantBind := []bpf.BindRule{
		{PortLo: 8000, PortHi: 8099, Proto: bpf.ProtoTCP, RuleID: 5},
		{PortLo: 22, PortHi: 22, Proto: bpf.ProtoTCP, RuleID: 6},
		{PortLo: 0, PortHi: 65535, Proto: bpf.ProtoAny, RuleID: 7},
	}
	if !slices.Equal(rs.Bind, wantBind) {
		t.Errorf("bind rules %+v, want %+v", rs.Bind, wantBind)
	}
}

func TestSocketAndBindErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"unknown socket kind", doc("p", `{network: {sockets: {deny: [raw, bluetooth]}}}`),
			[]string{`p.yaml: spec.network.sockets.deny[1]: "bluetooth" is not a socket kind (icmp, mptcp, packet, raw, sctp, udplite)`}},
		{"socket kind not a string", doc("p", `{network: {sockets: {deny: [{raw: 1}]}}}`),
			[]string{`p.yaml: spec.network.sockets.deny[0]: must be a string, got a mapping`}},
		{"bind port 0", doc("p", `{network: {bind: {deny: [{ports: ["0"]}]}}}`),
			[]string{`p.yaml: spec.network.bind.deny[0].ports[0]: "0" is not a port (1-65535)`}},
		{"bind protocol", doc("p", `{network: {bind: {deny: [{protocol: icmp}]}}}`),
			[]string{`p.yaml: spec.network.bind.deny[0].protocol: "icmp" is not a protocol (tcp, udp or any)`}},
		{"bind unknown field", doc("p", `{network: {bind: {deny: [{port: 80}]}}}`),
			[]string{`p.yaml: spec.network.bind.deny[0]: unknown field "port"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.src))
			checkErrorLines(t, err, tc.want...)
		})
	}
}

// Two policies of 10 port rules each on one CIDR compile to a union of 20
// (more than one LPM value holds inline; the bpf package chains the rest).
func TestCompileUnionOfManyPortRules(t *testing.T) {
	var ps []*Policy
	for i := range 2 {
		var ports []string
		for j := range 10 {
			ports = append(ports, fmt.Sprintf("%q", fmt.Sprint(1000+i*100+j)))
		}
		ps = append(ps, mustParse(t, fmt.Sprintf("p%d.yaml", i), doc(fmt.Sprintf("p%d", i),
			`{network: {connect: {deny: [{cidr: 10.0.0.0/8, protocol: tcp, ports: [`+strings.Join(ports, ",")+`]}]}}}`))...)
	}
	s := mustSet(t, ps...)
	rs, err := s.Compile(1, ps)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Connect) != 20 {
		t.Errorf("%d connect rules, want 20", len(rs.Connect))
	}
}
