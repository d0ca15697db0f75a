package bpf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// Exec rule kinds, as stored in the exec_rules map key. A ruleset with any
// allow rule runs only files they allow; deny rules still subtract.
const (
	ExecExact       uint32 = 0 // deny the whole resolved path
	ExecPrefix      uint32 = 1 // deny every path below a directory
	ExecAllowExact  uint32 = 2 // allow the whole resolved path
	ExecAllowPrefix uint32 = 3 // allow every path below a directory
	// execAncestor marks an ancestor binary of ancestry-scoped rules in
	// exec_rules (EXEC_ANCESTOR); Ruleset.Ancestors makes them.
	execAncestor uint32 = 4
	// execScoped is added to ExecExact and ExecPrefix for rules scoped to
	// ancestors (EXEC_EXACT_SCOPED, EXEC_PREFIX_SCOPED): only the exec
	// checks look those up.
	execScoped uint32 = 5
)

// MaxAncestorClasses bounds the distinct ancestor binaries one ruleset's
// ancestry-scoped rules may name: each is one bit of a process's classes.
const MaxAncestorClasses = 8

// Protocols a network rule can match (IPPROTO numbers; 0 = any).
const (
	ProtoAny uint8 = 0
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// A Ruleset is the compiled union of the policies that select one set of
// containers. Cgroups point at a ruleset by ID, so containers selected by the
// same policies share one copy of the rules in the kernel.
type Ruleset struct {
	ID      uint32
	Exec    []ExecRule
	Connect []NetRule // connect4/6, sendmsg4/6 (UDP) and egress packets of other sockets
	Sockets []SocketRule
	Bind    []BindRule
	// AuditNotAllowed: a file not on the allow list is only recorded
	// (wouldDeny), not refused. AuditUnresolved: the same for refusals
	// without a rule (a path or mapping that could not be judged).
	AuditNotAllowed bool
	AuditUnresolved bool
	// Ancestors are the binaries (SplitPath components) that
	// ancestry-scoped rules name: Ancestors[i] is class 1<<i of their From.
	Ancestors [][]string
	// ExecEvents turns on process_exec and process_exit events for the
	// processes of the ruleset's cgroups.
	ExecEvents bool
}

// An ExecRule denies or allows executing one path (ExecExact,
// ExecAllowExact) or anything below a directory (ExecPrefix,
// ExecAllowPrefix). Components is the path as SplitPath returns it; the
// enforcer hashes it with its own key when the ruleset is stored.
type ExecRule struct {
	Kind       uint32
	Components []string
	RuleID     uint32
	Audit      bool // audit mode: a match is recorded, the exec goes ahead
	// From scopes a deny rule to processes descended from one of these
	// ancestor classes (bits of Ruleset.Ancestors); 0 applies it to all.
	// Scoped rules match by path only, not by file identity.
	From uint8
}

// Allow reports whether the rule is an allow rule.
func (r ExecRule) Allow() bool { return r.Kind == ExecAllowExact || r.Kind == ExecAllowPrefix }

// A NetRule refuses traffic to Prefix on ports [PortLo, PortHi] (0-65535 for
// any port) over Proto (ProtoAny, ProtoTCP or ProtoUDP).
type NetRule struct {
	Prefix netip.Prefix
	PortLo uint16
	PortHi uint16
	Proto  uint8
	RuleID uint32
	Audit  bool // audit mode: a match is recorded, the traffic goes ahead
	// From scopes the rule like ExecRule.From. The egress packet check
	// knows no process and leaves scoped rules out.
	From uint8
}

// A SocketRule refuses socket() (cgroup/sock_create) of one kind of socket.
// SocketAny in Type or Protocol matches every value. Protocol is the one
// the kernel resolved: socket(AF_INET, SOCK_DGRAM, 0) is UDP (17).
type SocketRule struct {
	// AF_INET (2) or AF_INET6 (10), refused by sock_create; or AF_PACKET
	// (17) with any type and protocol, whose caller is killed at socket().
	Family   uint16
	Type     uint16 // SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, ... or SocketAny
	Protocol uint16 // IPPROTO number or SocketAny
	RuleID   uint32
	Audit    bool // audit mode: a match is recorded, the socket is made
}

// SocketAny is the wildcard of SocketRule.Type and Protocol.
const SocketAny uint16 = 0xffff

// A BindRule refuses bind() to ports [PortLo, PortHi] over Proto
// (ProtoAny matches every protocol). The port is the one the caller asks
// for; 0 (an ephemeral port) matches only a rule whose range holds 0.
type BindRule struct {
	PortLo uint16
	PortHi uint16
	Proto  uint8
	RuleID uint32
	Audit  bool // audit mode: a match is recorded, the bind goes ahead
}

// A HashKey is the secret key of PathHash. Each install makes its own, so a
// path hash cannot be computed, and so not forged, without root on the node.
type HashKey struct {
	K0, K1 uint64
}

// PathHash is SipHash-2-4 under key of the path's components, exactly as
// the exec program computes it while it walks a resolved path from the root
// down: for each component, its length as one little-endian 64-bit word,
// then its bytes as such words, the last one zero-padded. The lengths make
// the word stream encode the component list unambiguously. A hash over the
// first k components identifies the directory prefix rule for that
// directory; over all of them, the exact rule.
func PathHash(key HashKey, components []string) uint64 {
	s := newSip(key)
	for _, c := range components {
		s.word(uint64(len(c)))
		for i := 0; i < len(c); i += 8 {
			var word [8]byte
			copy(word[:], c[i:])
			s.word(binary.LittleEndian.Uint64(word[:]))
		}
	}
	return s.sum()
}

// sip is SipHash-2-4 over whole 64-bit words (struct sip in exec.h).
type sip struct {
	v0, v1, v2, v3 uint64
	words          uint64
}

func newSip(k HashKey) sip {
	return sip{
		v0: k.K0 ^ 0x736f6d6570736575,
		v1: k.K1 ^ 0x646f72616e646f6d,
		v2: k.K0 ^ 0x6c7967656e657261,
		v3: k.K1 ^ 0x7465646279746573,
	}
}

func (s *sip) round() {
	s.v0 += s.v1
	s.v1 = bits.RotateLeft64(s.v1, 13)
	s.v1 ^= s.v0
	s.v0 = bits.RotateLeft64(s.v0, 32)
	s.v2 += s.v3
	s.v3 = bits.RotateLeft64(s.v3, 16)
	s.v3 ^= s.v2
	s.v0 += s.v3
	s.v3 = bits.RotateLeft64(s.v3, 21)
	s.v3 ^= s.v0
	s.v2 += s.v1
	s.v1 = bits.RotateLeft64(s.v1, 17)
	s.v1 ^= s.v2
	s.v2 = bits.RotateLeft64(s.v2, 32)
}

func (s *sip) word(m uint64) {
	s.v3 ^= m
	s.round()
	s.round()
	s.v0 ^= m
	s.words++
}

// sum finalizes a copy: the message is the words fed so far.
func (s sip) sum() uint64 {
	b := (s.words * 8 & 0xff) << 56
	s.v3 ^= b
	s.round()
	s.round()
	s.v0 ^= b
	s.v2 ^= 0xff
	for range 4 {
		s.round()
	}
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

// MaxCgroupLevel bounds how deep below the cgroup v2 root a registered
// cgroup may sit (MAX_CGROUP_LEVEL in cgroup.h): the programs walk a task's
// ancestors from the root down to this level to find its container, so a
// workload nesting sub-cgroups deeper still cannot leave its container.
const MaxCgroupLevel = 32

// MaxPathDepth and MaxNameLen bound what the exec program walks; longer
// rule paths could never match, so they are refused when compiling.
const (
	MaxPathDepth = 32
	MaxNameLen   = 255
)

// SplitPath turns an absolute rule path into its components and whether it
// names a directory prefix (trailing slash). "/" alone is the prefix of
// every path. Paths are taken literally: "." and ".." components and
// relative paths are refused, because the kernel-resolved path never has them.
func SplitPath(path string) (components []string, prefix bool, err error) {
	if !strings.HasPrefix(path, "/") {
		return nil, false, fmt.Errorf("path %q: must be absolute", path)
	}
	prefix = strings.HasSuffix(path, "/")
	for _, c := range strings.Split(path, "/") {
		switch c {
		case "":
			continue // leading, trailing or doubled slash
		case ".", "..":
			return nil, false, fmt.Errorf("path %q: %q components are not allowed", path, c)
		}
		if len(c) > MaxNameLen {
			return nil, false, fmt.Errorf("path %q: component longer than %d bytes", path, MaxNameLen)
		}
		components = append(components, c)
	}
	if len(components) > MaxPathDepth {
		return nil, false, fmt.Errorf("path %q: deeper than %d components", path, MaxPathDepth)
	}
	if len(components) == 0 {
		prefix = true
	}
	return components, prefix, nil
}
