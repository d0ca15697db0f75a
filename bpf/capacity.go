package bpf

import (
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/cilium/ebpf"
)

// Map names whose capacity Options.Capacity sets.
const (
	MapCgroupRules = holdfastMapCgroupRules // registered cgroups
	MapRulesets    = holdfastMapRulesets    // distinct rulesets
	MapExecRules   = holdfastMapExecRules   // exec rules over all rulesets
	MapNet4Rules   = holdfastMapNet4Rules   // rulesets with IPv4 rules (each has its own trie)
	MapNet6Rules   = holdfastMapNet6Rules   // rulesets with IPv6 rules
	MapNetPrefixes = "net_prefixes"         // prefixes in one ruleset's trie, per family
	MapPortChunks  = holdfastMapPortChunks  // overflow chunks of 16 port rules, over all rulesets
	MapSocketRules = holdfastMapSocketRules // socket rules over all rulesets
	MapBindRules   = holdfastMapBindRules   // rulesets with bind rules
	MapDenials     = holdfastMapDenials     // (cgroup, rule, action) denial counters
	MapEvents      = holdfastMapEvents      // ring buffer bytes
	MapAuditRules  = holdfastMapAuditRules  // audit-mode rules over all rulesets
	MapProcesses   = holdfastMapProcesses   // tracked processes (LRU: the least recently used go when full)
)

// CapacityMaps are the maps whose capacity is configurable, in status order.
var CapacityMaps = []string{MapCgroupRules, MapRulesets, MapExecRules, MapNet4Rules, MapNet6Rules,
	MapNetPrefixes, MapPortChunks, MapSocketRules, MapBindRules, MapDenials, MapEvents, MapAuditRules, MapProcesses, MapProcessEnvs}

// ErrMapFull: a map has no room for another entry. The error names the map
// and its capacity; raise it with the engine's --max-* flags (a new capacity
// applies when the pins are next created, see MapUsage).
var ErrMapFull = errors.New("bpf map full")

// Capacity is the number of entries of each map (bytes for MapEvents); zero
// keeps the compiled default.
type Capacity map[string]uint32

// apply sets the capacities on a spec before anything is created.
func (c Capacity) apply(spec *ebpf.CollectionSpec) error {
	for name, n := range c {
		if n == 0 {
			continue
		}
		if name == MapNetPrefixes {
			// The inner trie of both families: each ruleset gets its own.
			spec.Maps[MapNet4Rules].InnerMap.MaxEntries = n
			spec.Maps[MapNet6Rules].InnerMap.MaxEntries = n
			continue
		}
		ms, ok := spec.Maps[name]
		if !ok || !slices.Contains(CapacityMaps, name) {
			return fmt.Errorf("capacity of map %s: no such configurable map", name)
		}
		if name == MapEvents && (n < 4096 || n&(n-1) != 0) {
			return fmt.Errorf("capacity of map %s: %d bytes is not a power of two of at least 4096", name, n)
		}
		ms.MaxEntries = n
	}
	return nil
}

// specCapacity is the capacity spec gives the configurable map name.
func specCapacity(spec *ebpf.CollectionSpec, name string) uint32 {
	if name == MapNetPrefixes {
		return spec.Maps[MapNet4Rules].InnerMap.MaxEntries
	}
	return spec.Maps[name].MaxEntries
}

// MapUsage is one map's fill level.
type MapUsage struct {
	Name string
	// Entries in the map now; -1 where a map has no entry count (the ring
	// buffer).
	Entries int
	// Capacity is what the map in the kernel has: a pinned map keeps the
	// capacity it was created with.
	Capacity uint32
	// Requested is what this engine was configured with; it differs from
	// Capacity when adopted pins predate the setting.
	Requested uint32
}

// MapUsage counts the entries of each configurable map. Counting reads the
// hash maps in batches and walks the LPM tries (one syscall per entry), so
// it is for status, not for hot paths.
func (e *Enforcer) MapUsage() ([]MapUsage, error) {
	var out []MapUsage
	for _, name := range CapacityMaps {
		if name == MapNetPrefixes {
			// One trie per ruleset and family: what a new trie gets.
			out = append(out, MapUsage{Name: name, Entries: -1, Capacity: e.inner4.MaxEntries, Requested: e.requested[name]})
			continue
		}
		m := e.mapNamed(name)
		u := MapUsage{Name: name, Entries: -1, Capacity: m.MaxEntries(), Requested: e.requested[name]}
		if name != MapEvents {
			n, err := e.countEntries(name, m)
			if err != nil {
				return nil, fmt.Errorf("count entries of map %s: %w", name, err)
			}
			u.Entries = n
		}
		out = append(out, u)
	}
	return out, nil
}

func (e *Enforcer) mapNamed(name string) *ebpf.Map {
	switch name {
	case MapCgroupRules:
		return e.maps.CgroupRules
	case MapRulesets:
		return e.maps.Rulesets
	case MapExecRules:
		return e.maps.ExecRules
	case MapNet4Rules:
		return e.maps.Net4Rules
	case MapNet6Rules:
		return e.maps.Net6Rules
	case MapPortChunks:
		return e.maps.PortChunks
	case MapSocketRules:
		return e.maps.SocketRules
	case MapBindRules:
		return e.maps.BindRules
	case MapDenials:
		return e.maps.Denials
	case MapEvents:
		return e.maps.Events
	case MapAuditRules:
		return e.maps.AuditRules
	case MapProcesses:
		return e.maps.Processes
	case MapProcessEnvs:
		return e.maps.ProcessEnvs
	}
	return nil
}

// fullError wraps err in ErrMapFull when the kernel said the map has no
// room: E2BIG from a full hash map, ENOSPC from a full LPM trie.
func (e *Enforcer) fullError(name string, err error) error {
	if errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: map %s holds its capacity of %d entries: %w", ErrMapFull, name, e.mapNamed(name).MaxEntries(), err)
	}
	return err
}

func (e *Enforcer) countEntries(name string, m *ebpf.Map) (int, error) {
	switch name {
	case MapCgroupRules:
		return countBatched[uint64, holdfastCgroupRule](m)
	case MapRulesets:
		return countBatched[uint32, holdfastRulesetInfo](m)
	case MapExecRules:
		return countBatched[holdfastExecKey, holdfastExecValue](m)
	case MapDenials:
		return countBatched[holdfastDenialKey, holdfastDenialValue](m)
	case MapAuditRules:
		return countBatched[holdfastAuditKey, uint32](m)
	case MapProcesses:
		return countBatched[uint32, holdfastProcess](m)
	case MapProcessEnvs:
		return countBatched[uint32, holdfastProcessEnv](m)
	}
	return countIterated(m)
}

// countBatched counts a hash map's entries 4096 at a time, or one by one
// where the kernel has no batch lookups for the map.
func countBatched[K, V any](m *ebpf.Map) (int, error) {
	total := 0
	err := eachEntry(m, func(K, V) { total++ })
	return total, err
}

// eachEntry calls fn with each entry of a hash map, reading 4096 entries
// per system call (one call per entry where the kernel has no batch
// lookups for the map): a restart reads every registered cgroup.
func eachEntry[K, V any](m *ebpf.Map, fn func(K, V)) error {
	keys, values := make([]K, 4096), make([]V, 4096)
	cursor := new(ebpf.MapBatchCursor)
	total := 0
	for {
		n, err := m.BatchLookup(cursor, keys, values, nil)
		for i := range n {
			fn(keys[i], values[i])
		}
		total += n
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported) && total == 0:
			var k K
			var v V
			iter := m.Iterate()
			for iter.Next(&k, &v) {
				fn(k, v)
			}
			if err := iter.Err(); err != nil {
				return fmt.Errorf("iterate: %w", err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("batch lookup: %w", err)
		}
	}
}

func countIterated(m *ebpf.Map) (int, error) {
	n := 0
	var k, v []byte
	iter := m.Iterate()
	for iter.Next(&k, &v) {
		n++
	}
	if err := iter.Err(); err != nil {
		return 0, fmt.Errorf("iterate: %w", err)
	}
	return n, nil
}

// DefaultCapacity is the capacity of every configurable map when no
// Capacity overrides it.
func DefaultCapacity() (Capacity, error) {
	spec, err := loadHoldfast()
	if err != nil {
		return nil, fmt.Errorf("default capacities: %w", err)
	}
	c := Capacity{}
	for _, name := range CapacityMaps {
		c[name] = specCapacity(spec, name)
	}
	return c, nil
}

// Fits says whether one ruleset alone fits maps of capacity c (zero
// entries: DefaultCapacity); if not, it can never be enforced, whatever
// else is loaded. The error wraps ErrMapFull and names each map.
func (c Capacity) Fits(rs Ruleset) error {
	def, err := DefaultCapacity()
	if err != nil {
		return err
	}
	for name, n := range c {
		if n != 0 {
			def[name] = n
		}
	}
	compiled, err := compileRuleset(rs, HashKey{K0: 1})
	if err != nil {
		return fmt.Errorf("ruleset %d: %w", rs.ID, err)
	}
	need := map[string]int{
		MapExecRules:   len(compiled.exec),
		MapNetPrefixes: max(len(compiled.v4), len(compiled.v6)),
		MapPortChunks:  len(compiled.chunks),
		MapSocketRules: len(compiled.sockets),
	}
	var errs []error
	for _, name := range CapacityMaps {
		if n, ok := need[name]; ok && n > int(def[name]) {
			errs = append(errs, fmt.Errorf("%w: needs %d entries in map %s, which holds %d", ErrMapFull, n, name, def[name]))
		}
	}
	return errors.Join(errs...)
}
