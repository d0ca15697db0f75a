package bpf

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// listeners accepts (and drops) TCP connections and UDP datagrams.
type listeners struct {
	tcp4, tcp4b, tcp4Other, tcp6, udp4, udp6 string
	tcp4Port, tcp4OtherPort                  uint16
}

func listenUDP(t *testing.T, addr string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func newListeners(t *testing.T) listeners {
	var ls listeners
	tcp4 := harness.ListenTCP(t, "127.0.0.1:0")
	// A second port on the same address, far enough from the first that
	// a range of +-1 around one never covers the other.
	var tcp4Other *net.TCPAddr
	for {
		tcp4Other = harness.ListenTCP(t, "127.0.0.1:0")
		if d := tcp4Other.Port - tcp4.Port; d > 1 || d < -1 {
			break
		}
	}
	ls.tcp4, ls.tcp4Port = tcp4.String(), uint16(tcp4.Port)
	ls.tcp4Other, ls.tcp4OtherPort = tcp4Other.String(), uint16(tcp4Other.Port)
	ls.tcp4b = harness.ListenTCP(t, "127.0.0.2:0").String()
	ls.tcp6 = harness.ListenTCP(t, "[::1]:0").String()
	ls.udp4 = listenUDP(t, "127.0.0.1:0")
	ls.udp6 = listenUDP(t, "[::1]:0")
	return ls
}

func portOf(t *testing.T, addr string) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

// netCheck is one helper call and the result it must print.
type netCheck struct {
	mode, network, laddr, raddr string
	want                        string // OK or EPERM
}

func runNetCheck(t *testing.T, cg *testCgroup, c netCheck) {
	t.Helper()
	out, err := helper(cg, c.mode, c.network, c.laddr, c.raddr).Output()
	if err != nil {
		t.Fatalf("%s %s %s -> %s: helper failed: %v", c.mode, c.network, c.laddr, c.raddr, err)
	}
	if got := strings.TrimSpace(string(out)); got != c.want {
		t.Errorf("%s %s from %s to %s: got %q, want %q", c.mode, c.network, c.laddr, c.raddr, got, c.want)
	}
}

func TestConnectRefused(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "net")
	ls := newListeners(t)
	p4 := ls.tcp4Port

	any := func(prefix string, proto uint8) NetRule {
		return NetRule{Prefix: mustPrefix(t, prefix), PortLo: 0, PortHi: 65535, Proto: proto, RuleID: 1}
	}
	ports := func(prefix string, lo, hi uint16, proto uint8) NetRule {
		return NetRule{Prefix: mustPrefix(t, prefix), PortLo: lo, PortHi: hi, Proto: proto, RuleID: 2}
	}
	dial := func(network, raddr, want string) netCheck { return netCheck{"dial", network, "-", raddr, want} }
	// An AF_INET6 socket (bound to [::]) reaches v4 destinations as ::ffff:a.b.c.d.
	dialMapped := func(network, raddr, want string) netCheck { return netCheck{"dial", network, "[::]:0", raddr, want} }
	sendto := func(network, laddr, raddr, want string) netCheck {
		return netCheck{"sendto", network, laddr, raddr, want}
	}

	tests := []struct {
		name   string
		rules  []NetRule
		checks []netCheck
	}{
		{"cidr /32", []NetRule{any("127.0.0.1/32", ProtoAny)}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			dial("tcp4", ls.tcp4b, "OK"),
			dial("tcp6", ls.tcp6, "OK"),
		}},
		{"cidr /8", []NetRule{any("127.0.0.0/8", ProtoAny)}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			dial("tcp4", ls.tcp4b, "EPERM"),
		}},
		{"nested prefixes inherit the shorter prefix's rules", []NetRule{
			ports("127.0.0.0/8", ls.tcp4OtherPort, ls.tcp4OtherPort, ProtoTCP),
			ports("127.0.0.1/32", p4, p4, ProtoTCP),
		}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			dial("tcp4", ls.tcp4Other, "EPERM"), // longest match is /32, rule is from /8
			dial("tcp4", ls.tcp4b, "OK"),
		}},
		{"single port", []NetRule{ports("127.0.0.1/32", p4, p4, ProtoTCP)}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			dial("tcp4", ls.tcp4Other, "OK"),
		}},
		{"port range", []NetRule{ports("127.0.0.1/32", p4-1, p4+1, ProtoAny)}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			dial("tcp4", ls.tcp4Other, "OK"),
		}},
		{"udp only", []NetRule{any("127.0.0.1/32", ProtoUDP)}, []netCheck{
			dial("tcp4", ls.tcp4, "OK"),
			dial("udp4", ls.udp4, "EPERM"),
			sendto("udp4", "127.0.0.1:0", ls.udp4, "EPERM"),
		}},
		{"tcp only", []NetRule{any("127.0.0.1/32", ProtoTCP)}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			sendto("udp4", "127.0.0.1:0", ls.udp4, "OK"),
		}},
		{"v6", []NetRule{any("::1/128", ProtoAny)}, []netCheck{
			dial("tcp6", ls.tcp6, "EPERM"),
			sendto("udp6", "[::1]:0", ls.udp6, "EPERM"),
			dial("tcp4", ls.tcp4, "OK"),
		}},
		{"v6 port", []NetRule{ports("::/0", portOf(t, ls.tcp6), portOf(t, ls.tcp6), ProtoTCP)}, []netCheck{
			dial("tcp6", ls.tcp6, "EPERM"),
			sendto("udp6", "[::1]:0", ls.udp6, "OK"),
		}},
		{"v4-mapped checked against v4 rules", []NetRule{any("127.0.0.1/32", ProtoAny)}, []netCheck{
			dialMapped("tcp", ls.tcp4, "EPERM"),
			dialMapped("udp", ls.udp4, "EPERM"),
			sendto("udp", "[::]:0", ls.udp4, "EPERM"),
			dialMapped("tcp", ls.tcp4b, "OK"),
		}},
		{"v4-mapped rule is a v4 rule", []NetRule{any("::ffff:127.0.0.1/128", ProtoTCP)}, []netCheck{
			dial("tcp4", ls.tcp4, "EPERM"),
			dialMapped("tcp", ls.tcp4, "EPERM"),
		}},
		{"v6 rules do not cover v4-mapped", []NetRule{any("::/0", ProtoAny)}, []netCheck{
			dial("tcp6", ls.tcp6, "EPERM"),
			dialMapped("tcp", ls.tcp4, "OK"),
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := Ruleset{ID: uint32(100 + i), Connect: tc.rules}
			enforce(t, e, cg, rs)
			for _, c := range tc.checks {
				runNetCheck(t, cg, c)
			}
			// The same calls from outside the cgroup are never refused.
			for _, c := range tc.checks {
				c.want = "OK"
				runNetCheck(t, nil, c)
			}
		})
	}
}
