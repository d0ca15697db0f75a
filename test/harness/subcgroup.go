package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
)

// Sub creates the cgroup name (which may hold several levels, "a/b") below
// cg, as a workload with a writable cgroupfs would, and removes it when the
// test ends.
func (cg Cgroup) Sub(t testing.TB, name string) Cgroup {
	t.Helper()
	dir := filepath.Join(cg.Dir, name)
	// Cleanups run last-in first-out: register the shallowest new level first.
	var created []string
	for d := dir; d != cg.Dir; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = append(created, d)
	}
	for i := len(created) - 1; i >= 0; i-- {
		t.Cleanup(func() { removeCgroup(t, created[i]) })
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create sub-cgroup %s: %v", dir, err)
	}
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Cgroup{Dir: dir, Path: filepath.Join(cg.Path, name), ID: id}
}
