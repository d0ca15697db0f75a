package bpf

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

const pingGroupRange = "/proc/sys/net/ipv4/ping_group_range"

// allowPing lets root create ping sockets (container runtimes set this in
// their network namespaces, so containers have them) until the test ends.
func allowPing(t *testing.T) {
	t.Helper()
	old, err := os.ReadFile(pingGroupRange)
	require.Privileged(t, "ping sockets", err)
	if err := os.WriteFile(pingGroupRange, []byte("0 2147483647"), 0); err != nil {
		require.Privileged(t, "ping sockets", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(pingGroupRange, old, 0); err != nil {
			t.Errorf("restore %s: %v", pingGroupRange, err)
		}
	})
}

var nonceSeq atomic.Uint64

func newNonce() []byte {
	return fmt.Appendf(nil, "holdfast-%d-%d", os.Getpid(), nonceSeq.Add(1))
}

// escape runs one escape helper in cg (nil: outside every test cgroup),
// waits for its marker and reports the helper's result and whether the
// probe reached rcv.
func escape(t *testing.T, cg *testCgroup, mark *markerSocket, kind string, rcv *rawReceiver) (string, bool) {
	t.Helper()
	nonce := newNonce()
	out, err := helper(cg, "escape", kind, rcv.addr.String(), string(nonce), mark.addr()).Output()
	if err != nil {
		t.Fatalf("escape %s to %s: helper failed: %v", kind, rcv.addr, err)
	}
	res := strings.TrimSpace(string(out))
	if res == "UNSUPPORTED" {
		return res, false
	}
	mark.wait(t, nonce)
	return res, rcv.got(nonce)
}

// TestNetworkEscapes checks that a destination denied with protocol any is
// unreachable over every kind of IP socket, from a registered cgroup and
// from a sub-cgroup of it, while the same probe from outside, or to an
// allowed address, arrives.
func TestNetworkEscapes(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "net")
	sub := env.cgroup(t, "net/sub")
	allowPing(t)
	mark := newMarker(t)

	denied4 := netip.MustParseAddr("127.0.0.2")
	allowed4 := netip.MustParseAddr("127.0.0.3")
	denied6 := netip.IPv6Loopback()
	rs := Ruleset{ID: 1, Connect: []NetRule{
		{Prefix: netip.PrefixFrom(denied4, 32), PortHi: 65535, RuleID: 1},
		{Prefix: netip.PrefixFrom(denied6, 128), PortHi: 65535, RuleID: 2},
	}}
	enforce(t, e, cg, rs)

	type target struct {
		name    string
		kind    string // receiver kind
		addr    netip.Addr
		allowed bool
	}
	targets := []target{
		{"v4 denied", "", denied4, false},
		{"v4 allowed", "", allowed4, true},
		{"v6 denied", "", denied6, false},
	}
	kinds := []struct{ kind, receiver string }{
		{"ping", "icmp"},
		{"ping-connected", "icmp"},
		{"raw-icmp", "icmp"},
		{"raw-udp", "udp"},
		{"raw-hdrincl", "udp"},
		{"udp", "udp"},
		{"udplite", "udplite"},
		{"sctp", "sctp"},
		{"mptcp", "tcp"},
	}
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			for _, tg := range targets {
				var rcv *rawReceiver
				switch k.receiver {
				case "icmp":
					rcv = newReceiver(t, "icmp", netip.AddrPortFrom(tg.addr, 0))
				case "udp", "udplite":
					rcv = newReceiver(t, k.receiver, netip.AddrPortFrom(tg.addr, 0))
				case "tcp":
					a := harness.ListenTCP(t, netip.AddrPortFrom(tg.addr, 0).String())
					rcv = &rawReceiver{fd: -1, addr: a.AddrPort()}
				case "sctp":
					rcv = newSCTPReceiver(t, netip.AddrPortFrom(tg.addr, 0))
				}
				for _, from := range []struct {
					name string
					cg   *testCgroup
				}{{"registered cgroup", cg}, {"sub-cgroup", sub}, {"outside", nil}} {
					res, arrived := escape(t, from.cg, mark, k.kind, rcv)
					if res == "UNSUPPORTED" {
						require.Unsupported(t, k.kind+" sockets", fmt.Errorf("socket() says the kernel has no such protocol"))
					}
					wantArrive := tg.allowed || from.cg == nil
					if rcv.fd < 0 {
						// Stream sockets: the connect result is the proof.
						arrived = res == "OK"
					}
					if arrived != wantArrive {
						t.Errorf("%s to %s (%s) from %s: arrived %v (send: %s), want %v", k.kind, rcv.addr, tg.name, from.name, arrived, res, wantArrive)
					}
				}
			}
		})
	}
}
