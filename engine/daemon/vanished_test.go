package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
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
