package bpf

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// netRuleEnv is a registered cgroup with a sub-cgroup, both under one
// ruleset; from iterates over them.
type netRuleEnv struct {
	e       *Enforcer
	cg, sub *testCgroup
}

func newNetRuleEnv(t *testing.T, rs Ruleset) *netRuleEnv {
	env := newTestEnv(t)
	n := &netRuleEnv{e: env.open(t), cg: env.cgroup(t, "net")}
	n.sub = env.cgroup(t, "net/sub")
	if err := n.e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	if err := n.e.SetCgroup(n.cg.id, rs.ID); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *netRuleEnv) from(t *testing.T, fn func(t *testing.T, cg *testCgroup)) {
	t.Run("registered cgroup", func(t *testing.T) { fn(t, n.cg) })
	t.Run("sub-cgroup", func(t *testing.T) { fn(t, n.sub) })
}

// More than 16 port rules on one prefix (here 40 single ports over two
// policies' worth of rules, plus a containing prefix's) all enforce.
func TestManyPortRulesOnOnePrefix(t *testing.T) {
	target := harness.ListenTCP(t, "127.0.0.1:0")
	other := harness.ListenTCP(t, "127.0.0.1:0")
	rs := Ruleset{ID: 7}
	var used []uint16
	for i := range 40 {
		p := uint16(20000 + i*7)
		if p == uint16(other.Port) {
			continue
		}
		used = append(used, p)
		rs.Connect = append(rs.Connect, NetRule{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: p, PortHi: p, Proto: ProtoTCP, RuleID: uint32(i + 1)})
	}
	// The last rule of the chain, from a containing prefix.
	rs.Connect = append(rs.Connect, NetRule{Prefix: mustPrefix(t, "127.0.0.0/8"), PortLo: uint16(target.Port), PortHi: uint16(target.Port), Proto: ProtoTCP, RuleID: 99})
	n := newNetRuleEnv(t, rs)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		runNetCheck(t, cg, netCheck{"dial", "tcp4", "-", target.String(), "EPERM"})
		runNetCheck(t, cg, netCheck{"dial", "tcp4", "-", other.String(), "OK"})
		// A port rule from inline, one from each chunk.
		for _, p := range []uint16{used[0], used[20], used[len(used)-1]} {
			runNetCheck(t, cg, netCheck{"sendto", "udp4", "127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", p), "OK"}) // tcp rules only
			out, _ := helper(cg, "dial", "tcp4", "-", fmt.Sprintf("127.0.0.1:%d", p)).Output()
			if got := strings.TrimSpace(string(out)); got != "EPERM" {
				t.Errorf("dial 127.0.0.1:%d: %q, want EPERM", p, got)
			}
		}
	})
	var info holdfastRulesetInfo
	if err := n.e.maps.Rulesets.Lookup(uint32(7), &info); err != nil {
		t.Fatal(err)
	}
	if info.Chunks != 2 {
		t.Errorf("ruleset uses %d overflow chunks, want 2", info.Chunks)
	}
	// Deleting the ruleset leaves nothing of it, chunks included.
	if err := n.e.DeleteCgroup(n.cg.id); err != nil {
		t.Fatal(err)
	}
	if err := n.e.DeleteRuleset(7); err != nil {
		t.Fatal(err)
	}
	if rs, err := n.e.Rulesets(); err != nil || len(rs) != 0 {
		t.Errorf("rulesets after delete: %v (%v)", rs, err)
	}
	var chunks int
	if err := forEachKey(n.e.maps.PortChunks, func(holdfastChunkKey) { chunks++ }); err != nil || chunks != 0 {
		t.Errorf("%d chunks left after delete (%v)", chunks, err)
	}
}

// MPTCP connects meet TCP rules.
func TestMPTCPIsTCP(t *testing.T) {
	mark := newMarker(t)
	a := harness.ListenTCP(t, "127.0.0.1:0")
	rs := Ruleset{ID: 11, Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: uint16(a.Port), PortHi: uint16(a.Port), Proto: ProtoTCP, RuleID: 1}}}
	n := newNetRuleEnv(t, rs)
	rcv := &rawReceiver{fd: -1, addr: a.AddrPort()}
	n.from(t, func(t *testing.T, cg *testCgroup) {
		if res, _ := escape(t, cg, mark, "mptcp", rcv); res != "EPERM" {
			t.Errorf("mptcp connect to %s under a tcp rule: %s, want EPERM", a, res)
		}
	})
	if res, _ := escape(t, nil, mark, "mptcp", rcv); res != "OK" {
		t.Errorf("mptcp connect from outside: %s, want OK", res)
	}
}

// A 127.0.0.1 / ::1 rule also refuses the unspecified forms the kernel
// sends to loopback, for connect and sendto.
func TestUnspecifiedDestinations(t *testing.T) {
	tcp4 := harness.ListenTCP(t, "127.0.0.1:0")
	tcp6 := harness.ListenTCP(t, "[::1]:0")
	udp4 := listenUDP(t, "127.0.0.1:0")
	udp6 := listenUDP(t, "[::1]:0")
	rs := Ruleset{ID: 3, Connect: []NetRule{
		{Prefix: mustPrefix(t, "127.0.0.1/32"), PortHi: 65535, RuleID: 1},
		{Prefix: mustPrefix(t, "::1/128"), PortHi: 65535, RuleID: 2},
	}}
	n := newNetRuleEnv(t, rs)
	p4, p6, u4, u6 := tcp4.Port, tcp6.Port, portOf(t, udp4), portOf(t, udp6)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		for _, c := range []netCheck{
			{"dial", "tcp4", "-", fmt.Sprintf("0.0.0.0:%d", p4), "EPERM"},
			{"dial", "tcp6", "-", fmt.Sprintf("[::]:%d", p6), "EPERM"},
			{"dial", "tcp", "[::]:0", fmt.Sprintf("[::ffff:0.0.0.0]:%d", p4), "EPERM"},
			{"dial", "udp4", "-", fmt.Sprintf("0.0.0.0:%d", u4), "EPERM"},
			{"dial", "udp6", "-", fmt.Sprintf("[::]:%d", u6), "EPERM"},
			{"sendto", "udp4", "0.0.0.0:0", fmt.Sprintf("0.0.0.0:%d", u4), "EPERM"},
			{"sendto", "udp6", "[::]:0", fmt.Sprintf("[::]:%d", u6), "EPERM"},
			{"sendto", "udp", "[::]:0", fmt.Sprintf("[::ffff:0.0.0.0]:%d", u4), "EPERM"},
		} {
			runNetCheck(t, cg, c)
		}
	})
}

// Connect rules are outbound only: a server in a registered cgroup answers
// a client from a denied CIDR, over many segments.
func TestRepliesToInboundConnectionsFlow(t *testing.T) {
	rs := Ruleset{ID: 4, Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.2/32"), PortHi: 65535, RuleID: 1}}}
	n := newNetRuleEnv(t, rs)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		cmd := helper(cg, "serve")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Kill() // a server stuck on dropped replies
			cmd.Wait()
		}()
		addr, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("server address: %v", err)
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 30 * time.Second}
		c, err := d.Dial("tcp4", strings.TrimSpace(addr))
		if err != nil {
			t.Fatalf("connect from the denied address: %v", err)
		}
		defer c.Close()
		// Only bounds a broken run (dropped replies stall the stream).
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		data, err := io.ReadAll(c)
		if err != nil || len(data) != 500000 {
			t.Fatalf("read %d bytes of the reply (%v), want 500000", len(data), err)
		}
	})
}

// Egress packets of raw sockets are checked by port and protocol too: a
// UDP port rule drops a crafted UDP datagram to that port only, and ICMP
// (no port) only meets rules over every port.
func TestRawPacketsByPort(t *testing.T) {
	allowPing(t)
	mark := newMarker(t)
	denied := newReceiver(t, "udp", netip.MustParseAddrPort("127.0.0.2:0"))
	allowed := newReceiver(t, "udp", netip.MustParseAddrPort("127.0.0.2:0"))
	icmp := newReceiver(t, "icmp", netip.MustParseAddrPort("127.0.0.2:0"))
	dp := denied.addr.Port()
	rs := Ruleset{ID: 5, Connect: []NetRule{
		{Prefix: mustPrefix(t, "127.0.0.2/32"), PortLo: dp, PortHi: dp, Proto: ProtoUDP, RuleID: 1},
		{Prefix: mustPrefix(t, "127.0.0.2/32"), PortLo: 1, PortHi: 65535, Proto: ProtoAny, RuleID: 2},
	}}
	n := newNetRuleEnv(t, rs)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		for _, kind := range []string{"raw-udp", "raw-hdrincl"} {
			if _, arrived := escape(t, cg, mark, kind, denied); arrived {
				t.Errorf("%s to denied port %d arrived", kind, dp)
			}
		}
		// 1-65535 is not every port: ICMP passes.
		if res, arrived := escape(t, cg, mark, "ping", icmp); !arrived {
			t.Errorf("ping to 127.0.0.2 with only port rules: did not arrive (send: %s)", res)
		}
	})
	// The any-protocol 1-65535 rule covers the other port as well.
	n.from(t, func(t *testing.T, cg *testCgroup) {
		if _, arrived := escape(t, cg, mark, "raw-udp", allowed); arrived {
			t.Errorf("raw-udp to port %d under a 1-65535 rule arrived", allowed.addr.Port())
		}
	})
}

// The UDP port of a raw IPv6 packet is found behind extension headers.
func TestRawPacketsByPortBehindIPv6ExtensionHeaders(t *testing.T) {
	mark := newMarker(t)
	denied := newReceiver(t, "udp", netip.MustParseAddrPort("[::1]:0"))
	allowed := newReceiver(t, "udp", netip.MustParseAddrPort("[::1]:0"))
	dp := denied.addr.Port()
	rs := Ruleset{ID: 10, Connect: []NetRule{{Prefix: mustPrefix(t, "::1/128"), PortLo: dp, PortHi: dp, Proto: ProtoUDP, RuleID: 1}}}
	n := newNetRuleEnv(t, rs)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		for _, kind := range []string{"raw-hdrincl", "raw-hdrincl-ext"} {
			if _, arrived := escape(t, cg, mark, kind, denied); arrived {
				t.Errorf("%s to denied port %d arrived", kind, dp)
			}
			if res, arrived := escape(t, cg, mark, kind, allowed); !arrived {
				t.Errorf("%s to allowed port %d did not arrive (send: %s)", kind, allowed.addr.Port(), res)
			}
		}
	})
}

// socket() of a denied kind fails with EPERM; other kinds still work.
func TestSocketRules(t *testing.T) {
	allowPing(t)
	rs := Ruleset{ID: 6, Sockets: []SocketRule{
		{Family: familyInet, Type: unix.SOCK_RAW, Protocol: SocketAny, RuleID: 1},
		{Family: familyInet6, Type: unix.SOCK_RAW, Protocol: SocketAny, RuleID: 1},
		{Family: familyInet, Type: unix.SOCK_DGRAM, Protocol: unix.IPPROTO_ICMP, RuleID: 2},
		{Family: familyInet, Type: SocketAny, Protocol: unix.IPPROTO_MPTCP, RuleID: 3},
	}}
	n := newNetRuleEnv(t, rs)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		for _, c := range []struct {
			family, typ, proto int
			want               string
		}{
			{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP, "EPERM"},
			{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW, "EPERM"},
			{unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6, "EPERM"},
			{unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP, "EPERM"},
			{unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, "EPERM"},
			{unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6, "OK"},
			{unix.AF_INET, unix.SOCK_DGRAM, 0, "OK"},
			{unix.AF_INET, unix.SOCK_STREAM, 0, "OK"},
			{unix.AF_INET6, unix.SOCK_STREAM, unix.IPPROTO_MPTCP, "OK"},
		} {
			args := []string{fmt.Sprint(c.family), fmt.Sprint(c.typ), fmt.Sprint(c.proto)}
			out, err := helper(cg, "socket", args...).Output()
			if err != nil {
				t.Fatalf("socket helper: %v", err)
			}
			if got := strings.TrimSpace(string(out)); got != c.want {
				t.Errorf("socket(%d, %d, %d): %q, want %q", c.family, c.typ, c.proto, got, c.want)
			}
		}
	})
	out, _ := helper(nil, "socket", fmt.Sprint(unix.AF_INET), fmt.Sprint(unix.SOCK_RAW), fmt.Sprint(unix.IPPROTO_UDP)).Output()
	if got := strings.TrimSpace(string(out)); got != "OK" {
		t.Errorf("raw socket outside the cgroup: %q, want OK", got)
	}
}

// AF_PACKET never reaches cgroup/sock_create: a packet rule kills the
// caller at socket(), before it can use the socket.
func TestPacketSocketsKilled(t *testing.T) {
	rs := Ruleset{ID: 9, Sockets: []SocketRule{{Family: familyPacket, Type: SocketAny, Protocol: SocketAny, RuleID: 1}}}
	n := newNetRuleEnv(t, rs)
	ethPAll := fmt.Sprint(int(htons(unix.ETH_P_ALL)))
	calls := [][]string{
		{fmt.Sprint(unix.AF_PACKET), fmt.Sprint(unix.SOCK_RAW), ethPAll},
		{fmt.Sprint(unix.AF_PACKET), fmt.Sprint(unix.SOCK_DGRAM), ethPAll},
		{fmt.Sprint(unix.AF_INET), fmt.Sprint(unix.SOCK_PACKET), ethPAll}, // legacy AF_PACKET
	}
	n.from(t, func(t *testing.T, cg *testCgroup) {
		for _, args := range calls {
			out, err := helper(cg, "socket", args...).Output()
			if !killedBySIGKILL(err) {
				t.Errorf("socket(%s) in the cgroup: %v, output %q; want killed by SIGKILL", strings.Join(args, ", "), err, out)
			}
		}
		out, _ := helper(cg, "socket", fmt.Sprint(unix.AF_INET), fmt.Sprint(unix.SOCK_RAW), fmt.Sprint(unix.IPPROTO_UDP)).Output()
		if got := strings.TrimSpace(string(out)); got != "OK" {
			t.Errorf("raw IP socket under a packet rule: %q, want OK", got)
		}
	})
	out, err := helper(nil, "socket", calls[0]...).Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != "OK" {
		t.Errorf("packet socket outside the cgroup: %q (%v), want OK", got, err)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// bind() to a denied port fails with EPERM; port 0 only under a range
// holding 0.
func TestBindRules(t *testing.T) {
	rs := Ruleset{ID: 8, Bind: []BindRule{
		{PortLo: 8000, PortHi: 8099, Proto: ProtoTCP, RuleID: 1},
		{PortLo: 5353, PortHi: 5353, Proto: ProtoAny, RuleID: 2},
	}}
	n := newNetRuleEnv(t, rs)
	n.from(t, func(t *testing.T, cg *testCgroup) {
		for _, c := range []netCheck{
			{"bind", "tcp4", "127.0.0.1:8050", "", "EPERM"},
			{"bind", "tcp6", "[::1]:8099", "", "EPERM"},
			{"bind", "udp4", "127.0.0.1:8050", "", "OK"},
			{"bind", "udp4", "127.0.0.1:5353", "", "EPERM"},
			{"bind", "tcp4", "127.0.0.1:5353", "", "EPERM"},
			{"bind", "tcp4", "127.0.0.1:8100", "", "OK"},
			{"bind", "tcp4", "127.0.0.1:0", "", "OK"},
		} {
			out, err := helper(cg, "bind", c.network, c.laddr).Output()
			if err != nil {
				t.Fatalf("bind helper: %v", err)
			}
			if got := strings.TrimSpace(string(out)); got != c.want {
				t.Errorf("bind %s %s: %q, want %q", c.network, c.laddr, got, c.want)
			}
		}
	})
	out, _ := helper(nil, "bind", "tcp4", "127.0.0.1:8050").Output()
	if got := strings.TrimSpace(string(out)); got != "OK" {
		t.Errorf("bind outside the cgroup: %q, want OK", got)
	}
}
