package daemon

import (
	"errors"
	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/cgroup"
)

// Enforcer is what the engine asks of the pinned BPF state: rulesets,
// cgroup entries, file rules, audit modes, events and counters.
// *bpf.Enforcer is the real one; the unit tests use an in-memory fake.
type Enforcer interface {
	PutRuleset(rs bpf.Ruleset) error
	DeleteRuleset(id uint32) error
	Rulesets() (map[uint32]bool, error)
	SetAuditModes(rs bpf.Ruleset) error

	SetCgroup(cgroupID uint64, rulesetID uint32) error
	DeleteCgroup(cgroupID uint64) error
	Cgroups() (map[uint64]uint32, error)

	SetCgroupFiles(cgroupID uint64, rules []bpf.FileRule) error
	DeleteCgroupFiles(cgroupID uint64) error
	CgroupFiles(cgroupID uint64) ([]bpf.FileRule, error)
	FileCgroups() ([]uint64, error)

	Events() (*bpf.EventReader, error)
	Denials() (map[bpf.DenialKey]bpf.DenialCount, error)
	DeleteDenials(cgroupIDs ...uint64) error
	Counters() (bpf.Counters, error)
	MapUsage() ([]bpf.MapUsage, error)

	// Process and Release are the pinned process table (lineage.Table).
	Process(pid uint32) (bpf.Process, bool, error)
	Release(pid uint32, startNs uint64, exitEvent bool) error
	ExitedKept() (map[uint32]uint64, error)
	// SetEnvCapture and EnvCapture are the kernel's environment capture
	// switch (--capture-env).
	SetEnvCapture(on bool) error
	EnvCapture() (bool, error)

	Adopted() bool
	Controls() []bpf.Control
	Pinned() ([]bpf.PinnedObject, error)
	Close() error
}

var _ Enforcer = (*bpf.Enforcer)(nil)

// openEnforcer loads or adopts the programs and maps (Options.OpenEnforcer
// or bpf.Open).
func (e *Engine) openEnforcer(layout bpf.Layout, o bpf.Options) (Enforcer, error) {
	if e.opts.OpenEnforcer != nil {
		return e.opts.OpenEnforcer(layout, o)
	}
	enf, err := bpf.Open(layout, o)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return enf, nil
}

// openEnforcerMaps opens the pinned maps alone (Options.OpenEnforcerMaps
// or bpf.OpenMaps).
func (e *Engine) openEnforcerMaps(layout bpf.Layout) (Enforcer, error) {
	if e.opts.OpenEnforcerMaps != nil {
		return e.opts.OpenEnforcerMaps(layout)
	}
	enf, err := bpf.OpenMaps(layout)
	if err != nil {
		return nil, err
	}
	return enf, nil
}

// cgroupID is the ID of a v2 cgroup directory (Options.CgroupID, else one
// stat on the device the cgroup file system had at start, else cgroup.ID).
func (e *Engine) cgroupID(dir string) (uint64, error) {
	if e.opts.CgroupID != nil {
		return e.opts.CgroupID(dir)
	}
	if e.cgroupFS != nil {
		id, err := e.cgroupFS.ID(dir)
		if !errors.Is(err, cgroup.ErrOtherDevice) {
			return id, err
		}
		// Another file system, or the cgroup file system mounted again
		// since start (a new device): the statfs says which.
	}
	return cgroup.ID(dir)
}
