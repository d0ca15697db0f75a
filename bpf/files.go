package bpf

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
)

// A FileID is a file as the exec program reads it from the inode the kernel
// executes or maps: Dev is inode->i_sb->s_dev in the kernel's encoding
// (KernelDev), Ino is inode->i_ino. Userspace stat can differ from both (on
// overlayfs across file systems st_dev is a per-layer pseudo device), so the
// resolver takes them from fdinfo and mountinfo, which print the kernel's.
type FileID struct {
	Dev uint32
	Ino uint64
}

// KernelDev encodes a device number as the kernel's MKDEV does (major in
// the top 12 bits, minor in the low 20), which is not userspace's dev_t.
func KernelDev(major, minor uint32) uint32 { return major<<20 | minor&(1<<20-1) }

func (f FileID) String() string { return fmt.Sprintf("%d:%d:%d", f.Dev>>20, f.Dev&(1<<20-1), f.Ino) }

// A FileRule denies executing (or mapping executable) one file by identity
// in one registered cgroup; RuleID is the exec rule it was resolved from.
// With Dir, File is a directory-prefix rule's directory and everything
// below it (by its parent chain within its file system, whatever mount,
// chroot or namespace it is reached through) is denied.
// With Allow, File is on the cgroup's allow list instead (Dir is then
// false).
type FileRule struct {
	File   FileID
	RuleID uint32
	Dir    bool
	Allow  bool
}

// verdict is what file_rules holds for one entry.
type verdict struct {
	rule  uint32
	allow bool
}

// fileEntry is one file_rules key of a cgroup: a file or a directory.
type fileEntry struct {
	File FileID
	Dir  bool
}

// file_key.kind (FILE_KIND_* in files.h).
const (
	fileKindFile uint32 = 0
	fileKindDir  uint32 = 1
)

func fileKey(cgroupID uint64, f fileEntry) holdfastFileKey {
	k := holdfastFileKey{CgroupId: cgroupID, Dev: f.File.Dev, Ino: f.File.Ino, Kind: fileKindFile}
	if f.Dir {
		k.Kind = fileKindDir
	}
	return k
}

// fileIndex mirrors file_rules by cgroup, so replacing or clearing one
// cgroup's files does not scan the whole map. It is loaded from the map on
// first use, which also picks up entries a previous engine pinned.
type fileIndex struct {
	mu       sync.Mutex
	loaded   bool
	byCgroup map[uint64]map[fileEntry]verdict
}

func (e *Enforcer) loadFileIndexLocked() error {
	if e.files.loaded {
		return nil
	}
	idx := map[uint64]map[fileEntry]verdict{}
	err := eachEntry(e.maps.FileRules, func(k holdfastFileKey, v holdfastFileValue) {
		if idx[k.CgroupId] == nil {
			idx[k.CgroupId] = map[fileEntry]verdict{}
		}
		idx[k.CgroupId][fileEntry{File: FileID{Dev: k.Dev, Ino: k.Ino}, Dir: k.Kind == fileKindDir}] = verdict{v.RuleId, v.Allow != 0}
	})
	if err != nil {
		return fmt.Errorf("read file_rules: %w", err)
	}
	e.files.byCgroup, e.files.loaded = idx, true
	return nil
}

// SetCgroupFiles makes rules the identity rules of cgroupID. New and changed
// entries are written before stale ones are removed, so a file denied
// before and after is never allowed in between. Of two rules for one file,
// a deny beats an allow, then the lowest rule ID is kept.
func (e *Enforcer) SetCgroupFiles(cgroupID uint64, rules []FileRule) error {
	want := map[fileEntry]verdict{}
	for _, r := range rules {
		f := fileEntry{File: r.File, Dir: r.Dir}
		allow := r.Allow && !r.Dir
		cur, ok := want[f]
		if !ok || cur.allow && !allow || cur.allow == allow && r.RuleID < cur.rule {
			want[f] = verdict{r.RuleID, allow}
		}
	}
	e.files.mu.Lock()
	defer e.files.mu.Unlock()
	if err := e.loadFileIndexLocked(); err != nil {
		return fmt.Errorf("set files of cgroup %d: %w", cgroupID, err)
	}
	have := e.files.byCgroup[cgroupID]
	if have == nil {
		have = map[fileEntry]verdict{}
		e.files.byCgroup[cgroupID] = have
	}
	added := false
	for f, v := range want {
		if cur, ok := have[f]; ok && cur == v {
			continue
		}
		value := holdfastFileValue{RuleId: v.rule}
		if v.allow {
			value.Allow = 1
		}
		if err := e.maps.FileRules.Update(fileKey(cgroupID, f), value, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set files of cgroup %d: write %s to file_rules: %w", cgroupID, f, err)
		}
		have[f] = v
		added = added || !v.allow
	}
	if added {
		// A mapping that passed before may be denied now.
		if err := e.bumpRulesGen(); err != nil {
			return fmt.Errorf("set files of cgroup %d: %w", cgroupID, err)
		}
	}
	for f := range have {
		if _, ok := want[f]; ok {
			continue
		}
		if err := e.deleteFileLocked(cgroupID, f); err != nil {
			return fmt.Errorf("set files of cgroup %d: %w", cgroupID, err)
		}
	}
	if len(have) == 0 {
		delete(e.files.byCgroup, cgroupID)
	}
	return nil
}

func (e *Enforcer) deleteFileLocked(cgroupID uint64, f fileEntry) error {
	if err := e.maps.FileRules.Delete(fileKey(cgroupID, f)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete %s from file_rules: %w", f, err)
	}
	delete(e.files.byCgroup[cgroupID], f)
	return nil
}

// DeleteCgroupFiles removes every identity rule of a cgroup. A cgroup
// without any gives an error wrapping os.ErrNotExist.
func (e *Enforcer) DeleteCgroupFiles(cgroupID uint64) error {
	e.files.mu.Lock()
	defer e.files.mu.Unlock()
	if err := e.loadFileIndexLocked(); err != nil {
		return fmt.Errorf("delete files of cgroup %d: %w", cgroupID, err)
	}
	have, ok := e.files.byCgroup[cgroupID]
	if !ok {
		return fmt.Errorf("delete files of cgroup %d: %w", cgroupID, os.ErrNotExist)
	}
	for f := range have {
		if err := e.deleteFileLocked(cgroupID, f); err != nil {
			return fmt.Errorf("delete files of cgroup %d: %w", cgroupID, err)
		}
	}
	delete(e.files.byCgroup, cgroupID)
	return nil
}

// CgroupFiles returns a cgroup's identity rules, sorted by rule ID.
func (e *Enforcer) CgroupFiles(cgroupID uint64) ([]FileRule, error) {
	e.files.mu.Lock()
	defer e.files.mu.Unlock()
	if err := e.loadFileIndexLocked(); err != nil {
		return nil, fmt.Errorf("files of cgroup %d: %w", cgroupID, err)
	}
	var out []FileRule
	for f, v := range e.files.byCgroup[cgroupID] {
		out = append(out, FileRule{File: f.File, RuleID: v.rule, Dir: f.Dir, Allow: v.allow})
	}
	slices.SortFunc(out, func(a, b FileRule) int {
		return cmp.Or(cmp.Compare(a.RuleID, b.RuleID), cmp.Compare(a.File.Dev, b.File.Dev), cmp.Compare(a.File.Ino, b.File.Ino),
			cmp.Compare(b2i(a.Dir), b2i(b.Dir)))
	})
	return out, nil
}

// FileCgroups lists the cgroups that have identity rules.
func (e *Enforcer) FileCgroups() ([]uint64, error) {
	e.files.mu.Lock()
	defer e.files.mu.Unlock()
	if err := e.loadFileIndexLocked(); err != nil {
		return nil, fmt.Errorf("list cgroups with files: %w", err)
	}
	return slices.Sorted(maps.Keys(e.files.byCgroup)), nil
}

func (f fileEntry) String() string {
	if f.Dir {
		return "directory " + f.File.String()
	}
	return f.File.String()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// writeFileConfig tells the programs the running kernel's FMODE_BACKING,
// so that a mapped file (the entry point of a new image, a library) is
// judged by the path the task opened (overlayfs maps the layer's file).
func (e *Enforcer) writeFileConfig() error {
	bit, err := fmodeBacking()
	if err != nil {
		return fmt.Errorf("write file config: %w", err)
	}
	if err := e.maps.FileConfig.Put(uint32(0), holdfastFileConfig{FmodeBacking: bit}); err != nil {
		return fmt.Errorf("write map %s: %w", holdfastMapFileConfig, err)
	}
	return nil
}
