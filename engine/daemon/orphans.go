package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
)

// findCgroups maps the given cgroup IDs to their directories by walking the
// cgroup v2 tree (one stat per cgroup on the node). The walk runs only when
// the maps hold entries the registry does not know, at start and reload;
// the orphans found are then re-checked one stat each.
func findCgroups(root string, ids []uint64, cgroupID func(string) (uint64, error)) (map[uint64]string, error) {
	found := map[uint64]string{}
	if len(ids) == 0 {
		return found, nil
	}
	want := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	errDone := errors.New("all found")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed during the walk
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		id, err := cgroupID(path)
		if err != nil {
			return nil
		}
		if want[id] {
			found[id] = path
			if len(found) == len(want) {
				return errDone
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return nil, fmt.Errorf("walk cgroup tree %s: %w", root, err)
	}
	return found, nil
}

// orphanByID finds an orphan by its api.OrphanPrefix ID.
func (e *Engine) orphanByID(id string) (api.Orphan, bool) {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, api.OrphanPrefix), 10, 64)
	if !strings.HasPrefix(id, api.OrphanPrefix) || err != nil {
		return api.Orphan{}, false
	}
	o, ok := e.orphans[n]
	return o, ok
}

// removeOrphanLocked stops enforcing an orphaned entry and drops its
// ruleset if nothing else uses it.
func (e *Engine) removeOrphanLocked(o api.Orphan, why string) error {
	if err := e.enforcer.DeleteCgroup(o.CgroupID); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove orphaned cgroup entry %d: %w", o.CgroupID, err)
	}
	delete(e.orphans, o.CgroupID)
	e.log.Info("orphaned cgroup entry removed", "cgroup", o.CgroupID, "path", o.Path, "reason", why)
	return e.dropOrphanRulesetLocked(o)
}

// dropOrphanRulesetLocked deletes the ruleset a former orphan used unless a
// registration or another orphan still uses it.
func (e *Engine) dropOrphanRulesetLocked(o api.Orphan) error {
	for _, other := range e.orphans {
		if other.Ruleset == o.Ruleset {
			return nil
		}
	}
	for _, key := range e.rulesetOf {
		if id, ok := e.reg.RulesetKeys()[key]; ok && id == o.Ruleset {
			return nil
		}
	}
	if err := e.enforcer.DeleteRuleset(o.Ruleset); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, bpf.ErrRulesetInUse) {
		return fmt.Errorf("remove ruleset %d of orphaned cgroup %d: %w", o.Ruleset, o.CgroupID, err)
	}
	delete(e.liveRulesets, o.Ruleset)
	return nil
}

// sweepOrphans removes the entries of orphaned cgroups that are gone.
func (e *Engine) sweepOrphans() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, o := range e.orphans {
		if id, err := e.cgroupID(o.Path); err == nil && id == o.CgroupID {
			continue
		}
		if err := e.removeOrphanLocked(o, "cgroup is gone"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
