package bpf

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
)

// cgroup_rules flags (CG_* in maps.h). Bit 2 is reserved for audit-only
// rulesets.
const (
	flagExec      uint32 = 1 << 0
	flagConnect   uint32 = 1 << 1
	flagSocket    uint32 = 1 << 3
	flagBind      uint32 = 1 << 4
	flagExecAllow uint32 = 1 << 5
	flagExecDirs  uint32 = 1 << 6
	flagAncestry  uint32 = 1 << 7
	flagExecEvent uint32 = 1 << 8
)

var (
	// ErrRulesetConflict: a ruleset with this ID is loaded with other
	// content. Rulesets are immutable; new content needs a new ID.
	ErrRulesetConflict = errors.New("ruleset already loaded with different content")
	// ErrRulesetNotLoaded: SetCgroup named a ruleset PutRuleset never stored.
	ErrRulesetNotLoaded = errors.New("ruleset not loaded")
	// ErrRulesetInUse: DeleteRuleset while cgroups still point at it.
	ErrRulesetInUse = errors.New("ruleset still used by cgroups")
)

type execEntry struct {
	key   holdfastExecKey
	value holdfastExecValue
	audit bool
}

type netEntry struct {
	prefix netip.Prefix
	value  holdfastPortRules
}

type socketEntry struct {
	key    holdfastSocketKey
	ruleID uint32
	audit  bool
}

// compiledRuleset is a ruleset in map form.
type compiledRuleset struct {
	exec    []execEntry
	v4, v6  []netEntry
	sockets []socketEntry
	bind    *holdfastPortRules
	chunks  []chunkEntry // overflow of v4, v6 and bind port rules
	info    holdfastRulesetInfo
	audit   []holdfastAuditKey // audit_rules entries, apart from the digest
}

// compileRuleset hashes the exec rules' paths with key, the enforcer's
// PathHash key, so the entries match only what its programs compute.
func compileRuleset(rs Ruleset, key HashKey) (compiledRuleset, error) {
	var c compiledRuleset
	allow := false
	for _, r := range rs.Exec {
		if r.Kind > ExecAllowPrefix {
			return c, fmt.Errorf("exec rule id %d: unknown kind %d", r.RuleID, r.Kind)
		}
		if err := checkComponents(r); err != nil {
			return c, fmt.Errorf("exec rule id %d: %w", r.RuleID, err)
		}
		if r.From != 0 && (r.Allow() || r.From>>len(rs.Ancestors) != 0) {
			return c, fmt.Errorf("exec rule id %d: ancestor classes %#x: only deny rules are scoped, to one of the %d ancestors", r.RuleID, r.From, len(rs.Ancestors))
		}
		k := holdfastExecKey{Ruleset: rs.ID, Kind: r.Kind, Hash: PathHash(key, r.Components)}
		if r.From != 0 {
			k.Kind += execScoped
		}
		c.exec = append(c.exec, execEntry{k, holdfastExecValue{RuleId: r.RuleID, From: uint32(r.From)}, r.Audit})
		allow = allow || r.Allow()
	}
	ancestors, err := compileAncestors(rs, key)
	if err != nil {
		return c, err
	}
	c.exec = append(c.exec, ancestors...)
	slices.SortFunc(c.exec, func(a, b execEntry) int {
		return cmp.Or(cmp.Compare(a.key.Kind, b.key.Kind), cmp.Compare(a.key.Hash, b.key.Hash),
			compareAudit(a.audit, b.audit), cmp.Compare(a.value.RuleId, b.value.RuleId))
	})
	// Same path twice: an enforcing rule wins (sorted first), then the
	// lowest rule ID; scoped rules of one path join their ancestor classes.
	c.exec = mergeExecEntries(c.exec)

	netRules := slices.Clone(rs.Connect)
	slices.SortFunc(netRules, func(a, b NetRule) int {
		return cmp.Or(comparePrefixes(a.Prefix, b.Prefix), cmp.Compare(a.PortLo, b.PortLo),
			cmp.Compare(a.PortHi, b.PortHi), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.RuleID, b.RuleID))
	})
	v4, v6, err := flattenNet(netRules)
	if err != nil {
		return c, err
	}
	var seq uint32
	for _, x := range v4 {
		v, chunks := packPortRules(x.rules, rs.ID, &seq)
		c.v4 = append(c.v4, netEntry{x.prefix, v})
		c.chunks = append(c.chunks, chunks...)
	}
	for _, x := range v6 {
		v, chunks := packPortRules(x.rules, rs.ID, &seq)
		c.v6 = append(c.v6, netEntry{x.prefix, v})
		c.chunks = append(c.chunks, chunks...)
	}

	sockets := slices.Clone(rs.Sockets)
	slices.SortFunc(sockets, func(a, b SocketRule) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Protocol, b.Protocol), compareAudit(a.Audit, b.Audit), cmp.Compare(a.RuleID, b.RuleID))
	})
	for _, r := range sockets {
		switch {
		case r.Family == familyInet || r.Family == familyInet6:
		case r.Family == familyPacket && r.Type == SocketAny && r.Protocol == SocketAny:
		default:
			return c, fmt.Errorf("socket rule id %d: (family %d, type %d, protocol %d): only AF_INET and AF_INET6 kinds, or all of AF_PACKET, can be denied",
				r.RuleID, r.Family, r.Type, r.Protocol)
		}
		key := holdfastSocketKey{Ruleset: rs.ID, Family: r.Family, Type: r.Type, Protocol: r.Protocol}
		if len(c.sockets) > 0 && c.sockets[len(c.sockets)-1].key == key {
			continue
		}
		c.sockets = append(c.sockets, socketEntry{key, r.RuleID, r.Audit})
	}
	enforceCoveringSockets(c.sockets)

	bind := slices.Clone(rs.Bind)
	slices.SortFunc(bind, func(a, b BindRule) int {
		// Enforcing rules first: the kernel takes the first match.
		return cmp.Or(compareAudit(a.Audit, b.Audit), cmp.Compare(a.PortLo, b.PortLo), cmp.Compare(a.PortHi, b.PortHi),
			cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.RuleID, b.RuleID))
	})
	var bindRules []portRule
	for _, r := range bind {
		if r.PortLo > r.PortHi {
			return c, fmt.Errorf("bind rule id %d: port range %d-%d is empty", r.RuleID, r.PortLo, r.PortHi)
		}
		if err := checkProto(r.Proto); err != nil {
			return c, fmt.Errorf("bind rule id %d: %w", r.RuleID, err)
		}
		pr := portRule{lo: r.PortLo, hi: r.PortHi, proto: r.Proto, ruleID: r.RuleID, audit: r.Audit}
		if !slices.ContainsFunc(bindRules, func(m portRule) bool { return m.lo == pr.lo && m.hi == pr.hi && m.proto == pr.proto }) {
			bindRules = append(bindRules, pr)
		}
	}
	if len(bindRules) > 0 {
		v, chunks := packPortRules(bindRules, rs.ID, &seq)
		c.bind = &v
		c.chunks = append(c.chunks, chunks...)
	}

	if len(c.exec) > 0 {
		c.info.Flags |= flagExec
	}
	if allow {
		c.info.Flags |= flagExecAllow
	}
	if slices.ContainsFunc(rs.Exec, func(r ExecRule) bool { return r.Kind == ExecPrefix && len(r.Components) > 0 }) {
		// Directory identities (FileRule.Dir) are looked up only then.
		c.info.Flags |= flagExecDirs
	}
	if len(c.v4)+len(c.v6) > 0 {
		c.info.Flags |= flagConnect
	}
	if len(rs.Ancestors) > 0 {
		c.info.Flags |= flagAncestry
	}
	if rs.ExecEvents {
		c.info.Flags |= flagExecEvent
	}
	if len(c.sockets) > 0 {
		c.info.Flags |= flagSocket
	}
	if c.bind != nil {
		c.info.Flags |= flagBind
	}
	c.info.ExecRules = uint32(len(c.exec))
	c.info.Net4Prefixes = uint32(len(c.v4))
	c.info.Net6Prefixes = uint32(len(c.v6))
	c.info.Sockets = uint32(len(c.sockets))
	c.info.BindRules = uint32(len(bindRules))
	c.info.Chunks = uint32(len(c.chunks))

	c.audit = auditEntries(rs)

	// The digest tells a repeated PutRuleset (fine) from a conflicting one.
	// Modes are not in it: they change in place (SetAuditModes).
	var buf bytes.Buffer
	for _, x := range c.exec {
		binary.Write(&buf, binary.LittleEndian, x.key)
		binary.Write(&buf, binary.LittleEndian, x.value)
	}
	for _, x := range c.v4 {
		binary.Write(&buf, binary.LittleEndian, key4(x.prefix))
		binary.Write(&buf, binary.LittleEndian, x.value)
	}
	for _, x := range c.v6 {
		binary.Write(&buf, binary.LittleEndian, key6(x.prefix))
		binary.Write(&buf, binary.LittleEndian, x.value)
	}
	for _, x := range c.sockets {
		binary.Write(&buf, binary.LittleEndian, x.key)
		binary.Write(&buf, binary.LittleEndian, x.ruleID)
	}
	if c.bind != nil {
		binary.Write(&buf, binary.LittleEndian, c.bind)
	}
	for _, x := range c.chunks {
		binary.Write(&buf, binary.LittleEndian, x.key)
		binary.Write(&buf, binary.LittleEndian, x.value)
	}
	sum := sha256.Sum256(buf.Bytes())
	c.info.Digest = binary.LittleEndian.Uint64(sum[:8])
	return c, nil
}

// checkComponents refuses paths the exec program could never match, as
// SplitPath does, so a hand-built rule cannot silently enforce nothing.
func checkComponents(r ExecRule) error {
	if len(r.Components) > MaxPathDepth {
		return fmt.Errorf("path deeper than %d components", MaxPathDepth)
	}
	if len(r.Components) == 0 && (r.Kind == ExecExact || r.Kind == ExecAllowExact) {
		return errors.New(`an exact rule needs a path below "/"`)
	}
	for _, c := range r.Components {
		if c == "" || c == "." || c == ".." || strings.Contains(c, "/") || len(c) > MaxNameLen {
			return fmt.Errorf("component %q is not a file name of 1 to %d bytes", c, MaxNameLen)
		}
	}
	return nil
}

// PutRuleset stores rs's rules under rs.ID. Putting the same content again
// is a no-op; different content under a loaded ID is ErrRulesetConflict.
// The ruleset becomes visible to SetCgroup only once all its rules are in.
func (e *Enforcer) PutRuleset(rs Ruleset) error {
	c, err := compileRuleset(rs, e.hashKey)
	if err != nil {
		return fmt.Errorf("put ruleset %d: %w", rs.ID, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()

	var cur holdfastRulesetInfo
	err = e.maps.Rulesets.Lookup(rs.ID, &cur)
	switch {
	case err == nil && cur.Digest == c.info.Digest:
		return nil
	case err == nil:
		return fmt.Errorf("put ruleset %d: %w", rs.ID, ErrRulesetConflict)
	case !errors.Is(err, ebpf.ErrKeyNotExist):
		return fmt.Errorf("put ruleset %d: look up rulesets: %w", rs.ID, err)
	}

	if e.partial[rs.ID] {
		if _, err := e.deleteRuleEntries(rs.ID); err != nil {
			return fmt.Errorf("put ruleset %d: clear leftovers of an interrupted put: %w", rs.ID, err)
		}
		delete(e.partial, rs.ID)
	}
	if err := e.writeRules(rs.ID, c); err != nil {
		// Leave no half ruleset behind; if that fails too, Rulesets
		// reports it and the next put of this ID clears it.
		if _, cleanErr := e.deleteRuleEntries(rs.ID); cleanErr != nil {
			e.partial[rs.ID] = true
		}
		return fmt.Errorf("put ruleset %d: %w", rs.ID, err)
	}
	if err := e.bumpRulesGen(); err != nil {
		return fmt.Errorf("put ruleset %d: %w", rs.ID, err)
	}
	return nil
}

func (e *Enforcer) writeRules(id uint32, c compiledRuleset) error {
	for _, x := range c.exec {
		if err := e.maps.ExecRules.Update(x.key, x.value, ebpf.UpdateAny); err != nil {
			err = e.fullError(MapExecRules, err)
			return fmt.Errorf("write exec rule %d to exec_rules: %w", x.value.RuleId, err)
		}
	}
	for _, x := range c.chunks {
		if err := e.maps.PortChunks.Update(x.key, x.value, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write chunk %d to port_chunks: %w", x.key.Seq, e.fullError(MapPortChunks, err))
		}
	}
	if err := e.writeTrie(e.maps.Net4Rules, e.inner4, holdfastMapNet4Rules, id, c.v4, key4); err != nil {
		return err
	}
	if err := e.writeTrie(e.maps.Net6Rules, e.inner6, holdfastMapNet6Rules, id, c.v6, key6); err != nil {
		return err
	}
	for _, x := range c.sockets {
		if err := e.maps.SocketRules.Update(x.key, x.ruleID, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write socket rule %d to socket_rules: %w", x.ruleID, e.fullError(MapSocketRules, err))
		}
	}
	if c.bind != nil {
		if err := e.maps.BindRules.Update(id, c.bind, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write bind rules to bind_rules: %w", e.fullError(MapBindRules, err))
		}
	}
	if err := e.writeAudit(id, c.audit); err != nil {
		return err
	}
	if err := e.maps.Rulesets.Update(id, c.info, ebpf.UpdateNoExist); err != nil {
		err = e.fullError(MapRulesets, err)
		return fmt.Errorf("write rulesets entry: %w", err)
	}
	return nil
}

// writeTrie creates the ruleset's own LPM trie of one family, fills it and
// links it from the outer map.
func (e *Enforcer) writeTrie(outer *ebpf.Map, inner *ebpf.MapSpec, name string, id uint32, entries []netEntry, keyOf func(netip.Prefix) any) error {
	if len(entries) == 0 {
		return nil
	}
	trie, err := ebpf.NewMap(inner)
	if err != nil {
		return fmt.Errorf("create %s trie: %w", name, err)
	}
	defer trie.Close() // the outer map keeps it
	for _, x := range entries {
		if err := trie.Update(keyOf(x.prefix), x.value, ebpf.UpdateAny); err != nil {
			if errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOSPC) {
				err = fmt.Errorf("%w: a ruleset's %s trie holds its capacity of %d prefixes: %w", ErrMapFull, name, inner.MaxEntries, err)
			}
			return fmt.Errorf("write %s to %s trie: %w", x.prefix, name, err)
		}
	}
	if err := outer.Update(id, trie, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("link trie from %s: %w", name, e.fullError(name, err))
	}
	return nil
}

func key4(p netip.Prefix) any {
	return holdfastNet4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}
}

func key6(p netip.Prefix) any {
	return holdfastNet6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}

// Address families of socket rules.
const (
	familyInet  uint16 = 2
	familyInet6 uint16 = 10
	// familyPacket: AF_PACKET, denied by killing the caller at socket().
	familyPacket uint16 = 17
)

// DeleteRuleset removes a ruleset's rules. It refuses while cgroups point
// at it (ErrRulesetInUse) and wraps os.ErrNotExist if nothing was stored.
func (e *Enforcer) DeleteRuleset(id uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()

	var users []uint64
	var cg uint64
	var rule holdfastCgroupRule
	iter := e.maps.CgroupRules.Iterate()
	for iter.Next(&cg, &rule) {
		if rule.Ruleset == id {
			users = append(users, cg)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("delete ruleset %d: read cgroup_rules: %w", id, err)
	}
	if len(users) > 0 {
		slices.Sort(users)
		return fmt.Errorf("delete ruleset %d: %w: %v", id, ErrRulesetInUse, users)
	}

	found := true
	if err := e.maps.Rulesets.Delete(id); errors.Is(err, ebpf.ErrKeyNotExist) {
		found = false
	} else if err != nil {
		return fmt.Errorf("delete ruleset %d from rulesets: %w", id, err)
	}
	n, err := e.deleteRuleEntries(id)
	if err != nil {
		e.partial[id] = true
		return fmt.Errorf("delete ruleset %d: %w", id, err)
	}
	delete(e.partial, id)
	// The ID may come back with other rules.
	if err := e.bumpRulesGen(); err != nil {
		return fmt.Errorf("delete ruleset %d: %w", id, err)
	}
	if !found && n == 0 {
		return fmt.Errorf("delete ruleset %d: %w", id, os.ErrNotExist)
	}
	return nil
}

// deleteRuleEntries removes the exec and net entries of a ruleset, found by
// scanning, so leftovers of an interrupted PutRuleset go too.
func (e *Enforcer) deleteRuleEntries(id uint32) (int, error) {
	n := 0
	del := func(m *ebpf.Map, name string, keys []any) error {
		for _, k := range keys {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete from %s: %w", name, err)
			}
			n++
		}
		return nil
	}
	execKeys, err := keysOf[holdfastExecKey](e.maps.ExecRules, func(k holdfastExecKey) bool { return k.Ruleset == id })
	if err != nil {
		return n, err
	}
	if err := del(e.maps.ExecRules, holdfastMapExecRules, execKeys); err != nil {
		return n, err
	}
	for _, m := range []struct {
		m    *ebpf.Map
		name string
	}{{e.maps.Net4Rules, holdfastMapNet4Rules}, {e.maps.Net6Rules, holdfastMapNet6Rules}, {e.maps.BindRules, holdfastMapBindRules}} {
		keys, err := keysOf[uint32](m.m, func(k uint32) bool { return k == id })
		if err != nil {
			return n, err
		}
		if err := del(m.m, m.name, keys); err != nil {
			return n, err
		}
	}
	socketKeys, err := keysOf[holdfastSocketKey](e.maps.SocketRules, func(k holdfastSocketKey) bool { return k.Ruleset == id })
	if err != nil {
		return n, err
	}
	if err := del(e.maps.SocketRules, holdfastMapSocketRules, socketKeys); err != nil {
		return n, err
	}
	chunkKeys, err := keysOf[holdfastChunkKey](e.maps.PortChunks, func(k holdfastChunkKey) bool { return k.Ruleset == id })
	if err != nil {
		return n, err
	}
	if err := del(e.maps.PortChunks, holdfastMapPortChunks, chunkKeys); err != nil {
		return n, err
	}
	auditKeys, err := keysOf[holdfastAuditKey](e.maps.AuditRules, func(k holdfastAuditKey) bool { return k.Ruleset == id })
	if err != nil {
		return n, err
	}
	return n, del(e.maps.AuditRules, holdfastMapAuditRules, auditKeys)
}

// keysOf collects the keys of m that match. Keys are collected before any
// delete, since deleting while iterating a hash map can restart the walk.
func keysOf[K any](m *ebpf.Map, match func(K) bool) ([]any, error) {
	var keys []any
	err := forEachKey(m, func(k K) {
		if match(k) {
			keys = append(keys, k)
		}
	})
	return keys, err
}

func forEachKey[K any](m *ebpf.Map, fn func(K)) error {
	var k K
	var value []byte
	iter := m.Iterate()
	for iter.Next(&k, &value) {
		fn(k)
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("iterate map: %w", err)
	}
	return nil
}

// SetCgroup points a cgroup at a stored ruleset, with the flags PutRuleset
// recorded for it (ErrRulesetNotLoaded if none). From then on, every exec
// and connect of tasks in that cgroup is checked.
func (e *Enforcer) SetCgroup(cgroupID uint64, rulesetID uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var info holdfastRulesetInfo
	if err := e.maps.Rulesets.Lookup(rulesetID, &info); errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("set cgroup %d to ruleset %d: %w", cgroupID, rulesetID, ErrRulesetNotLoaded)
	} else if err != nil {
		return fmt.Errorf("set cgroup %d to ruleset %d: look up rulesets: %w", cgroupID, rulesetID, err)
	}
	rule := holdfastCgroupRule{Ruleset: rulesetID, Flags: info.Flags}
	if err := e.maps.CgroupRules.Update(cgroupID, rule, ebpf.UpdateAny); err != nil {
		err = e.fullError(MapCgroupRules, err)
		return fmt.Errorf("set cgroup %d to ruleset %d: write cgroup_rules: %w", cgroupID, rulesetID, err)
	}
	return nil
}

// DeleteCgroup stops checking a cgroup. A cgroup that was not registered
// gives an error wrapping os.ErrNotExist.
func (e *Enforcer) DeleteCgroup(cgroupID uint64) error {
	if err := e.maps.CgroupRules.Delete(cgroupID); errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete cgroup %d: %w", cgroupID, os.ErrNotExist)
	} else if err != nil {
		return fmt.Errorf("delete cgroup %d from cgroup_rules: %w", cgroupID, err)
	}
	return nil
}

// Cgroups returns the registered cgroups and their ruleset IDs.
func (e *Enforcer) Cgroups() (map[uint64]uint32, error) {
	out := map[uint64]uint32{}
	err := eachEntry(e.maps.CgroupRules, func(cg uint64, rule holdfastCgroupRule) { out[cg] = rule.Ruleset })
	if err != nil {
		return nil, fmt.Errorf("read cgroup_rules: %w", err)
	}
	return out, nil
}

// Rulesets returns every ruleset ID found in the maps: true for complete
// rulesets, false for entries an interrupted PutRuleset left behind (delete
// them with DeleteRuleset).
func (e *Enforcer) Rulesets() (map[uint32]bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[uint32]bool{}
	var id uint32
	var info holdfastRulesetInfo
	iter := e.maps.Rulesets.Iterate()
	for iter.Next(&id, &info) {
		out[id] = true
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read rulesets: %w", err)
	}
	partial := func(id uint32) {
		if !out[id] {
			out[id] = false
		}
	}
	if err := forEachKey(e.maps.ExecRules, func(k holdfastExecKey) { partial(k.Ruleset) }); err != nil {
		return nil, fmt.Errorf("read exec_rules: %w", err)
	}
	for _, m := range []struct {
		m    *ebpf.Map
		name string
	}{{e.maps.Net4Rules, holdfastMapNet4Rules}, {e.maps.Net6Rules, holdfastMapNet6Rules}, {e.maps.BindRules, holdfastMapBindRules}} {
		if err := forEachKey(m.m, func(k uint32) { partial(k) }); err != nil {
			return nil, fmt.Errorf("read %s: %w", m.name, err)
		}
	}
	if err := forEachKey(e.maps.SocketRules, func(k holdfastSocketKey) { partial(k.Ruleset) }); err != nil {
		return nil, fmt.Errorf("read socket_rules: %w", err)
	}
	if err := forEachKey(e.maps.PortChunks, func(k holdfastChunkKey) { partial(k.Ruleset) }); err != nil {
		return nil, fmt.Errorf("read port_chunks: %w", err)
	}
	if err := forEachKey(e.maps.AuditRules, func(k holdfastAuditKey) { partial(k.Ruleset) }); err != nil {
		return nil, fmt.Errorf("read audit_rules: %w", err)
	}
	return out, nil
}

// Counters are totals over all CPUs since the maps were created.
type Counters struct {
	ExecChecked    uint64 // execs in cgroups with exec rules
	ExecDenied     uint64 // killed or refused
	ExecUnresolved uint64 // refused because the path was too deep to resolve
	ConnectChecked uint64
	ConnectRefused uint64
	EventsLost     uint64 // ring buffer full
	// DenialsUntracked: denials not counted per container because the
	// denials map was full (and so sent no event).
	DenialsUntracked uint64
	// Audited: decisions of audit-mode rules, recorded and let through
	// (not in ExecDenied or ConnectRefused).
	Audited uint64
}

// Counters reads the per-CPU counters map.
func (e *Enforcer) Counters() (Counters, error) {
	var c Counters
	fields := []*uint64{&c.ExecChecked, &c.ExecDenied, &c.ExecUnresolved, &c.ConnectChecked, &c.ConnectRefused, &c.EventsLost, &c.DenialsUntracked, &c.Audited}
	for i, f := range fields {
		var perCPU []uint64
		if err := e.maps.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return c, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			*f += v
		}
	}
	return c, nil
}
