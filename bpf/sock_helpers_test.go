package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/test/require"
)

// sockHelpers are the helper modes of the network escape tests (see
// runHelper). Each prints OK, EPERM, UNSUPPORTED or "ERR ...".
var sockHelpers = map[string]func(args []string) int{
	// escape KIND DST NONCE MARKER: send NONCE to DST over a socket of
	// KIND, then NONCE+"-marker" to the UDP MARKER from the same CPU, so
	// the marker's arrival proves the probe, if sent, was delivered first.
	"escape": escapeHelper,
	// socket FAMILY TYPE PROTO: create a socket.
	"socket": socketHelper,
	// bind NETWORK ADDR: bind a TCP or UDP socket.
	"bind": bindHelper,
	// serve: accept one TCP connection on 127.0.0.1, write "hello" to it.
	"serve": serveHelper,
}

func escapeHelper(args []string) int {
	if len(args) != 4 {
		fmt.Fprintf(os.Stderr, "escape: want KIND DST NONCE MARKER, got %q\n", args)
		return 2
	}
	kind, nonce, marker := args[0], []byte(args[2]), args[3]
	dst, err := netip.ParseAddrPort(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// One thread on one CPU: loopback delivers in order per CPU.
	runtime.LockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		fmt.Fprintln(os.Stderr, "cpu affinity:", err)
		return 2
	}
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			set.Zero()
			set.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fmt.Fprintln(os.Stderr, "pin to cpu:", err)
		return 2
	}
	res := escapeSend(kind, dst, nonce)
	if errors.Is(res, unix.EPROTONOSUPPORT) || errors.Is(res, unix.ESOCKTNOSUPPORT) {
		fmt.Println("UNSUPPORTED")
		return 0
	}
	fmt.Println(netResult(res))
	m, err := net.ResolveUDPAddr("udp4", marker)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	conn, err := net.DialUDP("udp4", nil, m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "marker:", err)
		return 2
	}
	defer conn.Close()
	if _, err := conn.Write(append(nonce, "-marker"...)); err != nil {
		fmt.Fprintln(os.Stderr, "marker:", err)
		return 2
	}
	return 0
}

// escapeSend sends nonce to dst over a socket of the given kind.
func escapeSend(kind string, dst netip.AddrPort, nonce []byte) error {
	v6 := dst.Addr().Is6()
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	var sotype, proto int
	switch kind {
	case "ping", "ping-connected":
		sotype, proto = unix.SOCK_DGRAM, unix.IPPROTO_ICMP
		if v6 {
			proto = unix.IPPROTO_ICMPV6
		}
	case "raw-icmp":
		sotype, proto = unix.SOCK_RAW, unix.IPPROTO_ICMP
		if v6 {
			proto = unix.IPPROTO_ICMPV6
		}
	case "raw-udp", "raw-hdrincl", "raw-hdrincl-ext":
		sotype, proto = unix.SOCK_RAW, unix.IPPROTO_UDP
	case "udplite":
		sotype, proto = unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE
	case "sctp":
		sotype, proto = unix.SOCK_STREAM, unix.IPPROTO_SCTP
	case "mptcp":
		sotype, proto = unix.SOCK_STREAM, unix.IPPROTO_MPTCP
	case "udp":
		sotype, proto = unix.SOCK_DGRAM, unix.IPPROTO_UDP
	default:
		return fmt.Errorf("unknown escape kind %q", kind)
	}
	fd, err := unix.Socket(family, sotype|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	sa := sockaddr(dst)
	var pkt []byte
	switch kind {
	case "ping", "ping-connected", "raw-icmp":
		typ := byte(8) // ICMP echo request
		if v6 {
			typ = 128
		}
		pkt = append([]byte{typ, 0, 0, 0, 0x12, 0x34, 0, 1}, nonce...)
		if !v6 && kind == "raw-icmp" {
			binary.BigEndian.PutUint16(pkt[2:], inetChecksum(pkt))
		}
		if kind == "ping-connected" {
			if err := unix.Connect(fd, sa); err != nil {
				return err
			}
			_, err := unix.Write(fd, pkt)
			return err
		}
	case "raw-udp":
		pkt = udpPacket(0, dst.Port(), nonce)
		if v6 {
			// Raw IPv6 sockets leave the checksum to the caller unless
			// told where it is.
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, 6); err != nil {
				return fmt.Errorf("set IPV6_CHECKSUM: %w", err)
			}
			// The port of an IPv6 raw socket address must be 0 or the
			// protocol; the UDP header carries the real one.
			sa = sockaddr(netip.AddrPortFrom(dst.Addr(), 0))
		}
	case "raw-hdrincl", "raw-hdrincl-ext":
		if v6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_HDRINCL, 1); err != nil {
				return fmt.Errorf("set IPV6_HDRINCL: %w", err)
			}
			pkt = ipv6UDPPacket(dst, nonce, kind == "raw-hdrincl-ext")
		} else {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
				return fmt.Errorf("set IP_HDRINCL: %w", err)
			}
			ip := dst.Addr().As4()
			pkt = append(ipv4Header(ip, len(nonce)+8), udpPacket(40000, dst.Port(), nonce)...)
		}
		if v6 {
			// The destination port of an IPv6 raw socket address must be 0
			// or the protocol.
			sa = sockaddr(netip.AddrPortFrom(dst.Addr(), 0))
		}
	case "sctp", "mptcp":
		if err := unix.Connect(fd, sa); err != nil {
			return err
		}
		_, err := unix.Write(fd, nonce)
		return err
	case "udp", "udplite":
		pkt = nonce
	}
	return unix.Sendto(fd, pkt, 0, sa)
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// udpPacket is a UDP header (checksum 0: none for IPv4; the kernel fills it
// in for IPv6 with IPV6_CHECKSUM) and payload.
func udpPacket(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// ipv4Header is a header for a UDP packet from 127.0.0.1 to dst; the kernel
// fills in the checksum and ID of IP_HDRINCL packets.
func ipv4Header(dst [4]byte, l4len int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+l4len))
	h[8] = 64
	h[9] = unix.IPPROTO_UDP
	copy(h[12:], []byte{127, 0, 0, 1})
	copy(h[16:], dst[:])
	return h
}

// ipv6UDPPacket is a whole IPv6 UDP packet from ::1 with its checksum,
// optionally behind a destination options extension header.
func ipv6UDPPacket(dst netip.AddrPort, payload []byte, ext bool) []byte {
	udp := udpPacket(40000, dst.Port(), payload)
	src := netip.IPv6Loopback().As16()
	d := dst.Addr().As16()
	var pseudo []byte
	pseudo = append(pseudo, src[:]...)
	pseudo = append(pseudo, d[:]...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(udp)))
	pseudo = append(pseudo, 0, 0, 0, unix.IPPROTO_UDP)
	sum := inetChecksum(append(pseudo, udp...))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
	h := make([]byte, 40)
	h[0] = 0x60
	h[6] = unix.IPPROTO_UDP
	h[7] = 64
	copy(h[8:], src[:])
	copy(h[24:], d[:])
	if ext {
		// Next header UDP, length 0 (8 bytes), one PadN option of 4.
		h[6] = unix.IPPROTO_DSTOPTS
		h = append(h, unix.IPPROTO_UDP, 0, 1, 4, 0, 0, 0, 0)
	}
	binary.BigEndian.PutUint16(h[4:], uint16(len(h)-40+len(udp)))
	return append(h, udp...)
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func socketHelper(args []string) int {
	if len(args) != 3 {
		fmt.Fprintf(os.Stderr, "socket: want FAMILY TYPE PROTO, got %q\n", args)
		return 2
	}
	var n [3]int
	for i, a := range args {
		v, err := strconv.Atoi(a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		n[i] = v
	}
	fd, err := unix.Socket(n[0], n[1]|unix.SOCK_CLOEXEC, n[2])
	if err == nil {
		unix.Close(fd)
	}
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
		fmt.Println("UNSUPPORTED")
		return 0
	}
	fmt.Println(netResult(err))
	return 0
}

func bindHelper(args []string) int {
	if len(args) != 2 {
		fmt.Fprintf(os.Stderr, "bind: want NETWORK ADDR, got %q\n", args)
		return 2
	}
	var err error
	switch args[0] {
	case "tcp", "tcp4", "tcp6":
		var l net.Listener
		if l, err = net.Listen(args[0], args[1]); err == nil {
			l.Close()
		}
	default:
		var pc net.PacketConn
		if pc, err = net.ListenPacket(args[0], args[1]); err == nil {
			pc.Close()
		}
	}
	fmt.Println(netResult(err))
	return 0
}

func serveHelper(args []string) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Println(netResult(err))
		return 0
	}
	defer l.Close()
	fmt.Println(l.Addr().String())
	c, err := l.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	// Enough data for several segments, all to the denied peer.
	if _, err := c.Write(bytes.Repeat([]byte("hello"), 100000)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// rawReceiver holds a socket outside the test cgroups that sees packets of
// one kind addressed to the test's destinations.
type rawReceiver struct {
	fd   int
	addr netip.AddrPort // where probes go
}

// newReceiver opens a receiver: "udp" binds to addr; "icmp" is a raw ICMP
// or ICMPv6 socket that sees every echo request of its family.
func newReceiver(t *testing.T, kind string, addr netip.AddrPort) *rawReceiver {
	t.Helper()
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	var fd int
	var err error
	switch kind {
	case "udp", "udplite":
		proto := unix.IPPROTO_UDP
		if kind == "udplite" {
			proto = unix.IPPROTO_UDPLITE
		}
		fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			err = unix.Bind(fd, sockaddr(addr))
		}
	case "icmp":
		proto := unix.IPPROTO_ICMP
		if family == unix.AF_INET6 {
			proto = unix.IPPROTO_ICMPV6
		}
		fd, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	default:
		t.Fatalf("unknown receiver kind %q", kind)
	}
	if err != nil {
		t.Fatalf("open %s receiver on %s: %v", kind, addr, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	r := &rawReceiver{fd: fd, addr: addr}
	if kind == "udp" || kind == "udplite" {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatalf("udp receiver address: %v", err)
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			r.addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			r.addr = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		}
	}
	return r
}

// got reports whether a packet holding nonce is queued, reading whatever is
// queued without waiting.
func (r *rawReceiver) got(nonce []byte) bool {
	buf := make([]byte, 65536)
	found := false
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return found
		}
		if bytes.Contains(buf[:n], nonce) {
			found = true
		}
	}
}

// markerSocket is where escape helpers send their marker.
type markerSocket struct {
	conn *net.UDPConn
}

func newMarker(t *testing.T) *markerSocket {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen for markers: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &markerSocket{conn: conn}
}

func (m *markerSocket) addr() string { return m.conn.LocalAddr().String() }

// wait reads until the marker of nonce arrives. The deadline only bounds a
// broken run; it decides nothing.
func (m *markerSocket) wait(t *testing.T, nonce []byte) {
	t.Helper()
	want := append(bytes.Clone(nonce), "-marker"...)
	buf := make([]byte, 2048)
	m.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		n, err := m.conn.Read(buf)
		if err != nil {
			t.Fatalf("marker %s never arrived: %v", want, err)
		}
		if bytes.Equal(buf[:n], want) {
			return
		}
	}
}

// newSCTPReceiver listens for SCTP associations on addr (any port), or
// skips the test where the kernel has no SCTP.
func newSCTPReceiver(t *testing.T, addr netip.AddrPort) *rawReceiver {
	t.Helper()
	family := unix.AF_INET
	if addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) {
		require.Unsupported(t, "SCTP", fmt.Errorf("socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): %w (no sctp module in this kernel)", err))
	}
	if err != nil {
		t.Fatalf("open sctp receiver: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sockaddr(addr)); err != nil {
		t.Fatalf("bind sctp receiver to %s: %v", addr, err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatalf("listen sctp on %s: %v", addr, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	return &rawReceiver{fd: -1, addr: netip.AddrPortFrom(addr.Addr(), uint16(port))}
}
