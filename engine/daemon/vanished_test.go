package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/require"
)

// TestCgroupsGone checks the parallel check of many registrations: each
// answer is its own container's, whatever worker made it.
func TestCgroupsGone(t *testing.T) {
	live := map[string]uint64{}
	var cs []api.Container
	for i := range 2000 {
		c := api.Container{ID: fmt.Sprint(i), CgroupID: uint64(100 + i), CgroupPath: fmt.Sprintf("/cg/%d", i)}
		switch i % 4 {
		case 0: // path still holds its cgroup
			live[c.CgroupPath] = c.CgroupID
		case 1: // path removed
		case 2: // path holds another cgroup now
			live[c.CgroupPath] = c.CgroupID + 1
		case 3: // registered by ID alone: nothing to check
			c.CgroupPath = ""
		}
		cs = append(cs, c)
	}
	e := &Engine{opts: Options{CgroupID: func(dir string) (uint64, error) {
		if id, ok := live[dir]; ok {
			return id, nil
		}
		return 0, errors.New("no such cgroup")
	}}}
	gone := e.cgroupsGone(cs)
	for i, g := range gone {
		if want := i%4 == 1 || i%4 == 2; g != want {
			t.Fatalf("container %d (%+v): gone %v, want %v", i, cs[i], g, want)
		}
	}
	if got := e.cgroupsGone(nil); len(got) != 0 {
		t.Fatalf("no containers: %v", got)
	}
}

// TestCgroupIDOneStat checks the one-stat cgroup ID of a registration
// against cgroup.ID's statfs and stat: the same ID for the root and a
// child, and a directory off the cgroup file system refused.
func TestCgroupIDOneStat(t *testing.T) {
	require.Root(t)
	m, err := cgroup.Detect()
	require.Privileged(t, "cgroup v2", err)
	fs, err := cgroup.OpenFS(m.Root)
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{cgroupFS: &fs}
	child, err := os.MkdirTemp(m.Root, "holdfast-cgroupid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(child) })
	var ids []uint64
	for _, dir := range []string{m.Root, child} {
		want, err := cgroup.ID(dir)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, want)
		if got, err := e.cgroupID(dir); err != nil || got != want {
			t.Errorf("cgroupID(%s) = %d, %v; want %d", dir, got, err, want)
		}
	}
	if id, err := e.cgroupID(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a cgroup v2 directory") {
		t.Errorf("cgroupID of a directory off the cgroup file system = %d, %v; want a refusal", id, err)
	}
	// A control file is on the file system, with an inode of its own.
	if id, err := e.cgroupID(filepath.Join(child, "cgroup.procs")); err == nil {
		t.Errorf("cgroupID of a cgroup's control file = %d, want a refusal", id)
	}
	// A cgroup gone (a restart checks every registration): one stat says
	// so, without the statfs of the fallback.
	gone := filepath.Join(m.Root, "holdfast-cgroupid-gone")
	var pathErr *os.PathError
	if _, err := e.cgroupID(gone); !errors.As(err, &pathErr) || pathErr.Op != "stat" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroupID of a cgroup gone: %v, want one stat's not-exist", err)
	}
	// The file system mounted again since start: its device changed.
	e.cgroupFS = &cgroup.FS{} // device 0: no file system's
	if got, err := e.cgroupID(child); err != nil || got != ids[1] {
		t.Errorf("cgroupID(%s) with the device at start stale = %d, %v; want %d", child, got, err, ids[1])
	}
}
