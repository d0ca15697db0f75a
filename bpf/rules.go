package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Exec rule kinds, as stored in the exec_rules map key.
const (
	ExecExact  uint32 = 0 // the whole resolved path
	ExecPrefix uint32 = 1 // every path below a directory
)

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
}

// An ExecRule denies executing one path (ExecExact) or anything below a
// directory (ExecPrefix). Hash is PathHash of the path's components.
type ExecRule struct {
	Kind   uint32
	Hash   uint64
	RuleID uint32
}

// A NetRule refuses traffic to Prefix on ports [PortLo, PortHi] (0-65535 for
// any port) over Proto (ProtoAny, ProtoTCP or ProtoUDP).
type NetRule struct {
	Prefix netip.Prefix
	PortLo uint16
	PortHi uint16
	Proto  uint8
	RuleID uint32
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
}

// Hash parameters shared with holdfast.c; changing them is an ABI change.
const (
	pathHashSeed  uint64 = 0xcbf29ce484222325
	pathHashPrime uint64 = 0x100000001b3
)

// PathHash hashes path components exactly as the exec program does while it
// walks a resolved path from the root down: for each component, its length
// and then its bytes as little-endian 64-bit words, the last one zero-padded.
// A hash over the first k components identifies the directory prefix rule
// for that directory; over all of them, the exact rule.
func PathHash(components []string) uint64 {
	h := pathHashSeed
	for _, c := range components {
		h = (h ^ uint64(len(c))) * pathHashPrime
		for i := 0; i < len(c); i += 8 {
			var word [8]byte
			copy(word[:], c[i:])
			h = (h ^ binary.LittleEndian.Uint64(word[:])) * pathHashPrime
		}
	}
	return h
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
