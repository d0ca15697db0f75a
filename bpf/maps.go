package bpf

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/cilium/ebpf"
)

// cgroup_rules flags (CG_EXEC, CG_CONNECT in holdfast.c). Bit 2 is reserved
// for audit-only rulesets.
const (
	flagExec    uint32 = 1 << 0
	flagConnect uint32 = 1 << 1
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
}

// compiledRuleset is a ruleset in map form.
type compiledRuleset struct {
	exec   []execEntry
	v4, v6 []lpmEntry
	info   holdfastRulesetInfo
}

func compileRuleset(rs Ruleset) (compiledRuleset, error) {
	var c compiledRuleset
	execRules := slices.Clone(rs.Exec)
	slices.SortFunc(execRules, func(a, b ExecRule) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Hash, b.Hash), cmp.Compare(a.RuleID, b.RuleID))
	})
	for _, r := range execRules {
		if r.Kind != ExecExact && r.Kind != ExecPrefix {
			return c, fmt.Errorf("exec rule id %d: unknown kind %d", r.RuleID, r.Kind)
		}
		key := holdfastExecKey{Ruleset: rs.ID, Kind: r.Kind, Hash: r.Hash}
		if len(c.exec) > 0 && c.exec[len(c.exec)-1].key == key {
			continue // same path twice: the lowest rule ID reports it
		}
		c.exec = append(c.exec, execEntry{key, holdfastExecValue{RuleId: r.RuleID}})
	}

	netRules := slices.Clone(rs.Connect)
	slices.SortFunc(netRules, func(a, b NetRule) int {
		return cmp.Or(comparePrefixes(a.Prefix, b.Prefix), cmp.Compare(a.PortLo, b.PortLo),
			cmp.Compare(a.PortHi, b.PortHi), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.RuleID, b.RuleID))
	})
	var err error
	if c.v4, c.v6, err = flattenNet(netRules); err != nil {
		return c, err
	}

	if len(c.exec) > 0 {
		c.info.Flags |= flagExec
	}
	if len(c.v4)+len(c.v6) > 0 {
		c.info.Flags |= flagConnect
	}
	c.info.ExecRules = uint32(len(c.exec))
	c.info.Net4Prefixes = uint32(len(c.v4))
	c.info.Net6Prefixes = uint32(len(c.v6))

	// The digest tells a repeated PutRuleset (fine) from a conflicting one.
	var buf bytes.Buffer
	for _, x := range c.exec {
		binary.Write(&buf, binary.LittleEndian, x)
	}
	for _, x := range c.v4 {
		binary.Write(&buf, binary.LittleEndian, x.key4(rs.ID))
		binary.Write(&buf, binary.LittleEndian, x.value())
	}
	for _, x := range c.v6 {
		binary.Write(&buf, binary.LittleEndian, x.key6(rs.ID))
		binary.Write(&buf, binary.LittleEndian, x.value())
	}
	sum := sha256.Sum256(buf.Bytes())
	c.info.Digest = binary.LittleEndian.Uint64(sum[:8])
	return c, nil
}

// PutRuleset stores rs's rules under rs.ID. Putting the same content again
// is a no-op; different content under a loaded ID is ErrRulesetConflict.
// The ruleset becomes visible to SetCgroup only once all its rules are in.
func (e *Enforcer) PutRuleset(rs Ruleset) error {
	c, err := compileRuleset(rs)
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
			return fmt.Errorf("write exec rule %d to exec_rules: %w", x.value.RuleId, err)
		}
	}
	for _, x := range c.v4 {
		if err := e.maps.Net4Rules.Update(x.key4(id), x.value(), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write %s to net4_rules: %w", x.prefix, err)
		}
	}
	for _, x := range c.v6 {
		if err := e.maps.Net6Rules.Update(x.key6(id), x.value(), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("write %s to net6_rules: %w", x.prefix, err)
		}
	}
	if err := e.maps.Rulesets.Update(id, c.info, ebpf.UpdateNoExist); err != nil {
		return fmt.Errorf("write rulesets entry: %w", err)
	}
	return nil
}

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
	net4Keys, err := keysOf[holdfastNet4Key](e.maps.Net4Rules, func(k holdfastNet4Key) bool { return k.Ruleset == id })
	if err != nil {
		return n, err
	}
	if err := del(e.maps.Net4Rules, holdfastMapNet4Rules, net4Keys); err != nil {
		return n, err
	}
	net6Keys, err := keysOf[holdfastNet6Key](e.maps.Net6Rules, func(k holdfastNet6Key) bool { return k.Ruleset == id })
	if err != nil {
		return n, err
	}
	return n, del(e.maps.Net6Rules, holdfastMapNet6Rules, net6Keys)
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
	var cg uint64
	var rule holdfastCgroupRule
	iter := e.maps.CgroupRules.Iterate()
	for iter.Next(&cg, &rule) {
		out[cg] = rule.Ruleset
	}
	if err := iter.Err(); err != nil {
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
	if err := forEachKey(e.maps.Net4Rules, func(k holdfastNet4Key) { partial(k.Ruleset) }); err != nil {
		return nil, fmt.Errorf("read net4_rules: %w", err)
	}
	if err := forEachKey(e.maps.Net6Rules, func(k holdfastNet6Key) { partial(k.Ruleset) }); err != nil {
		return nil, fmt.Errorf("read net6_rules: %w", err)
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
}

// Counters reads the per-CPU counters map.
func (e *Enforcer) Counters() (Counters, error) {
	var c Counters
	fields := []*uint64{&c.ExecChecked, &c.ExecDenied, &c.ExecUnresolved, &c.ConnectChecked, &c.ConnectRefused, &c.EventsLost}
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
