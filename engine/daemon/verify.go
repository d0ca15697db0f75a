package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// crunSubCgroup is where crun's systemd driver puts a container's process:
// a child of the scope the OCI cgroupsPath names.
const crunSubCgroup = "container"

// cgroupWitness is a process whose cgroup the kernel reports, and what it
// is to the container.
type cgroupWitness struct {
	what string
	pid  int
}

// witnesses are the processes known to be inside c: its own process (Pid)
// and, for a registrar that runs in the container (a createContainer hook),
// the registrar itself.
func witnesses(ctx context.Context, c api.Container) ([]cgroupWitness, error) {
	var ws []cgroupWitness
	if c.Pid > 0 {
		ws = append(ws, cgroupWitness{what: fmt.Sprintf("its process %d", c.Pid), pid: c.Pid})
	}
	if c.PeerInContainer {
		pid, ok := api.PeerPID(ctx)
		if !ok {
			return nil, errors.New("the registrar runs in the container, but its pid is not visible to the engine (run the engine in the host's pid namespace)")
		}
		ws = append(ws, cgroupWitness{what: fmt.Sprintf("the registrar (pid %d), which runs in it", pid), pid: pid})
	}
	return ws, nil
}

// cgroupCheckMode says whether claims can be checked here: an engine in a
// cgroup namespace cannot name other processes' cgroups.
func (e *Engine) cgroupCheckMode() string {
	if e.cgroups.Namespaced {
		return "off: the engine runs in a cgroup namespace and cannot see host cgroup paths"
	}
	return "process: claims are checked against /proc/<pid>/cgroup of the container's process and of a registrar that runs in it"
}

// verifyCgroup checks a registrar's cgroup claim against the kernel. With
// no claim, c takes the cgroup its process is in. A claim holds when each
// known process of the container is in the named cgroup, or in its child
// "container" (crun's systemd driver; the named scope is registered, which
// covers the child). Anything else contradicts the kernel and is refused,
// naming both cgroups.
func (e *Engine) verifyCgroup(ctx context.Context, c *api.Container) error {
	ws, err := witnesses(ctx, *c)
	if err != nil || len(ws) == 0 || e.cgroups.Namespaced {
		return err
	}
	for _, w := range ws {
		path, err := e.cgroups.PathOfPID(w.pid)
		if err != nil {
			return fmt.Errorf("check cgroup against %s: %w", w.what, err)
		}
		dir := e.cgroups.Dir(path)
		if c.CgroupPath == "" && c.CgroupID == 0 {
			c.CgroupPath = dir
			if err := e.resolveCgroup(c); err != nil {
				return err
			}
			continue
		}
		id, ok, err := sameOrCrunChild(*c, dir, e.cgroupID)
		if err != nil {
			return fmt.Errorf("check cgroup against %s: %w", w.what, err)
		}
		if !ok {
			claimed := c.CgroupPath
			if claimed == "" {
				claimed = "named by id"
			}
			return fmt.Errorf("claimed cgroup %s (id %d) does not hold the container: %s is in cgroup %s (id %d)", claimed, c.CgroupID, w.what, dir, id)
		}
	}
	return nil
}

// sameOrCrunChild tells whether dir, where a process of c is, is c's
// claimed cgroup or crun's "container" child of it.
func sameOrCrunChild(c api.Container, dir string, cgroupID func(string) (uint64, error)) (uint64, bool, error) {
	if dir == c.CgroupPath && c.CgroupID != 0 {
		return c.CgroupID, true, nil // the claim's path, whose id was just read
	}
	id, err := cgroupID(dir)
	if err != nil {
		return 0, false, err
	}
	if id == c.CgroupID {
		return id, true, nil
	}
	if filepath.Base(dir) == crunSubCgroup {
		if parent, err := cgroupID(filepath.Dir(dir)); err == nil && parent == c.CgroupID {
			return id, true, nil
		}
	}
	return id, false, nil
}

// checkIdentity settles what a registration claims before it is recorded:
// its cgroup, checked against the kernel, and its pod's identity and
// labels when it names a sandbox.
func (e *Engine) checkIdentity(ctx context.Context, c *api.Container) error {
	if c.CgroupPath != "" || c.CgroupID != 0 || (c.Pid <= 0 && !c.PeerInContainer) {
		if err := e.resolveCgroup(c); err != nil {
			return err
		}
	}
	if err := e.verifyCgroup(ctx, c); err != nil {
		return err
	}
	if c.CgroupID == 0 {
		return errors.New("no cgroup: the engine cannot see the cgroups of its processes")
	}
	return e.resolvePod(ctx, c)
}
