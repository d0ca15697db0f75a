package bpf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// unpinTimeout bounds the wait for the kernel to release unpinned programs.
// bpffs drops a pin's reference after an RCU grace period and links detach
// from a workqueue, so removal alone returns before enforcement stops.
const unpinTimeout = 10 * time.Second

// errStillLoaded: programs stayed loaded after their pins were removed,
// because another process holds descriptors to them.
var errStillLoaded = errors.New("programs still loaded after unpinning (held open by a process?)")

// unpin removes path (a pin or a directory of pins, of any ABI) and waits
// until the programs it pinned, directly or through links, are unloaded:
// when it returns nil, they no longer run.
func (l Layout) unpin(path string) error {
	ids := programsPinnedUnder(path)
	if err := l.remove(path); err != nil {
		return err
	}
	return waitUnloaded(ids, time.Now().Add(unpinTimeout))
}

// programsPinnedUnder finds the programs that pins below root keep loaded.
// Pins it cannot open (maps, or broken entries) are skipped: they keep no
// program running.
func programsPinnedUnder(root string) []ebpf.ProgramID {
	var ids []ebpf.ProgramID
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if p, err := ebpf.LoadPinnedProgram(path, nil); err == nil {
			if info, err := p.Info(); err == nil {
				if id, ok := info.ID(); ok {
					ids = append(ids, id)
				}
			}
			p.Close()
			return nil
		}
		if lk, err := link.LoadPinnedLink(path, nil); err == nil {
			if info, err := lk.Info(); err == nil {
				ids = append(ids, info.Program)
			}
			lk.Close()
		}
		return nil
	})
	slices.Sort(ids)
	return slices.Compact(ids)
}

func waitUnloaded(ids []ebpf.ProgramID, deadline time.Time) error {
	for _, id := range ids {
		for {
			p, err := ebpf.NewProgramFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				p.Close()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("program %d: %w", id, errStillLoaded)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}
