package daemon

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/registry"
)

// snapshotFiles makes dir hold copies of exactly files (by base name), so
// a later start can fall back to the last good copies of a policy dir.
func snapshotFiles(files []string, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	want := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		if want[name] {
			continue
		}
		want[name] = true
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("copy %s: %w", f, err)
		}
		if err := linux.WriteFileAtomic(filepath.Join(dir, name), data, registry.StatePerm); err != nil {
			return fmt.Errorf("copy %s: %w", f, err)
		}
	}
	old, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, f := range old {
		if !want[f.Name()] {
			os.Remove(filepath.Join(dir, f.Name()))
		}
	}
	return nil
}
