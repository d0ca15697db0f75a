package daemon

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/holdfast-dev/holdfast/bpf"
)

// fakeEnforcer keeps in memory what *bpf.Enforcer keeps in pinned maps,
// with the same refusals (a cgroup needs a stored ruleset, a used ruleset
// cannot be deleted, a missing entry wraps os.ErrNotExist). Its state
// outlives Close, as pins outlive an engine.
type fakeEnforcer struct {
	mu       sync.Mutex
	rulesets map[uint32]bpf.Ruleset
	cgroups  map[uint64]uint32
	files    map[uint64][]bpf.FileRule
	// putErr and setErr, when set, are returned by PutRuleset and
	// SetCgroup (a full map).
	putErr, setErr error
	closes         int
	captureEnv     bool
}

func newFakeEnforcer() *fakeEnforcer {
	return &fakeEnforcer{rulesets: map[uint32]bpf.Ruleset{}, cgroups: map[uint64]uint32{}, files: map[uint64][]bpf.FileRule{}}
}

var _ Enforcer = (*fakeEnforcer)(nil)

func (f *fakeEnforcer) PutRuleset(rs bpf.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.putErr != nil {
		return fmt.Errorf("put ruleset %d: %w", rs.ID, f.putErr)
	}
	if _, ok := f.rulesets[rs.ID]; ok {
		return fmt.Errorf("put ruleset %d: %w", rs.ID, bpf.ErrRulesetConflict)
	}
	f.rulesets[rs.ID] = rs
	return nil
}

func (f *fakeEnforcer) DeleteRuleset(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for cg, rs := range f.cgroups {
		if rs == id {
			return fmt.Errorf("delete ruleset %d: %w: cgroup %d", id, bpf.ErrRulesetInUse, cg)
		}
	}
	if _, ok := f.rulesets[id]; !ok {
		return fmt.Errorf("delete ruleset %d: %w", id, os.ErrNotExist)
	}
	delete(f.rulesets, id)
	return nil
}

func (f *fakeEnforcer) Rulesets() (map[uint32]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint32]bool{}
	for id := range f.rulesets {
		out[id] = true
	}
	return out, nil
}

// SetAuditModes replaces the stored rules' modes; the rules themselves
// must be the stored ones, as the kernel's digest check demands.
func (f *fakeEnforcer) SetAuditModes(rs bpf.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.rulesets[rs.ID]
	if !ok {
		return fmt.Errorf("set audit modes of ruleset %d: %w", rs.ID, bpf.ErrRulesetNotLoaded)
	}
	if !slices.Equal(ruleIDs(cur), ruleIDs(rs)) {
		return fmt.Errorf("set audit modes of ruleset %d: %w", rs.ID, bpf.ErrRulesetConflict)
	}
	f.rulesets[rs.ID] = rs
	return nil
}

// ruleIDs lists a ruleset's rule IDs, kind by kind.
func ruleIDs(rs bpf.Ruleset) []uint32 {
	var ids []uint32
	for _, r := range rs.Exec {
		ids = append(ids, r.RuleID)
	}
	for _, r := range rs.Connect {
		ids = append(ids, r.RuleID)
	}
	for _, r := range rs.Sockets {
		ids = append(ids, r.RuleID)
	}
	for _, r := range rs.Bind {
		ids = append(ids, r.RuleID)
	}
	return ids
}

func (f *fakeEnforcer) SetCgroup(cgroupID uint64, rulesetID uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setErr != nil {
		return fmt.Errorf("set cgroup %d to ruleset %d: %w", cgroupID, rulesetID, f.setErr)
	}
	if _, ok := f.rulesets[rulesetID]; !ok {
		return fmt.Errorf("set cgroup %d to ruleset %d: %w", cgroupID, rulesetID, bpf.ErrRulesetNotLoaded)
	}
	f.cgroups[cgroupID] = rulesetID
	return nil
}

func (f *fakeEnforcer) DeleteCgroup(cgroupID uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return deleteEntry(f.cgroups, cgroupID, "delete cgroup")
}

// deleteEntry deletes a cgroup's entry of m, wrapping os.ErrNotExist for
// one that is not there, as the pinned maps do.
func deleteEntry[V any](m map[uint64]V, cgroupID uint64, op string) error {
	if _, ok := m[cgroupID]; !ok {
		return fmt.Errorf("%s %d: %w", op, cgroupID, os.ErrNotExist)
	}
	delete(m, cgroupID)
	return nil
}

func (f *fakeEnforcer) Cgroups() (map[uint64]uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.cgroups), nil
}

func (f *fakeEnforcer) SetCgroupFiles(cgroupID uint64, rules []bpf.FileRule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(rules) == 0 {
		delete(f.files, cgroupID)
		return nil
	}
	f.files[cgroupID] = slices.Clone(rules)
	return nil
}

func (f *fakeEnforcer) DeleteCgroupFiles(cgroupID uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return deleteEntry(f.files, cgroupID, "delete files of cgroup")
}

func (f *fakeEnforcer) CgroupFiles(cgroupID uint64) ([]bpf.FileRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.files[cgroupID]), nil
}

func (f *fakeEnforcer) FileCgroups() ([]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.files)), nil
}

// errNoKernel answers what only the kernel can: events and the process
// table.
var errNoKernel = errors.New("fake enforcer: no kernel behind it")

func (f *fakeEnforcer) Events() (*bpf.EventReader, error) { return nil, errNoKernel }

func (f *fakeEnforcer) Denials() (map[bpf.DenialKey]bpf.DenialCount, error) {
	return map[bpf.DenialKey]bpf.DenialCount{}, nil
}

func (f *fakeEnforcer) DeleteDenials(cgroupIDs ...uint64) error { return nil }

func (f *fakeEnforcer) Counters() (bpf.Counters, error) { return bpf.Counters{}, nil }

func (f *fakeEnforcer) MapUsage() ([]bpf.MapUsage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []bpf.MapUsage{{Name: bpf.MapCgroupRules, Entries: len(f.cgroups)}}, nil
}

func (f *fakeEnforcer) Process(pid uint32) (bpf.Process, bool, error) {
	return bpf.Process{}, false, nil
}

func (f *fakeEnforcer) Release(pid uint32, startNs uint64, exitEvent bool) error { return nil }
func (f *fakeEnforcer) ExitedKept() (map[uint32]uint64, error)                   { return nil, errNoKernel }

func (f *fakeEnforcer) SetEnvCapture(on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.captureEnv = on
	return nil
}

func (f *fakeEnforcer) EnvCapture() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.captureEnv, nil
}

func (f *fakeEnforcer) Adopted() bool { return true }

func (f *fakeEnforcer) Controls() []bpf.Control { return nil }

func (f *fakeEnforcer) Pinned() ([]bpf.PinnedObject, error) { return nil, nil }

func (f *fakeEnforcer) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	return nil
}

// state is a copy of the cgroup entries and the stored ruleset IDs.
func (f *fakeEnforcer) state() (map[uint64]uint32, []uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.cgroups), slices.Sorted(maps.Keys(f.rulesets))
}

func (f *fakeEnforcer) ruleset(id uint32) (bpf.Ruleset, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rs, ok := f.rulesets[id]
	return rs, ok
}
