package hook

import (
	"fmt"
	"os"
	"path"
	"strconv"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
)

// Cgroup is a container's resolved cgroup v2.
type Cgroup = cgroup.Cgroup

// CgroupResolver finds a container's cgroup v2. Proc is where procfs is
// mounted ("/proc" when empty).
type CgroupResolver struct {
	Proc string
}

func (r CgroupResolver) proc() string {
	if r.Proc == "" {
		return "/proc"
	}
	return r.Proc
}

// Resolve finds the cgroup of the container whose create hook is running.
// At createContainer the hook runs in the container's cgroup, so
// /proc/self/cgroup names it; at createRuntime pid is the container init's
// host pid. If that fails, or a cgroup namespace hides the path,
// linux.cgroupsPath from config.json is used.
func (r CgroupResolver) Resolve(stage ocihook.Stage, pid int, cgroupsPath string) (Cgroup, error) {
	mount, err := r.mount()
	if err != nil {
		return Cgroup{}, err
	}
	var procFile string
	switch stage {
	case ocihook.StageCreateContainer:
		procFile = path.Join(r.proc(), "self", "cgroup")
	case ocihook.StageCreateRuntime:
		procFile = path.Join(r.proc(), strconv.Itoa(pid), "cgroup")
	default:
		return Cgroup{}, fmt.Errorf("resolve cgroup: stage %s has no container cgroup", stage)
	}
	return mount.Locate(procFile, cgroupsPath)
}

// mount finds the host's cgroup2 mount. Inside a cgroup namespace (a
// createContainer hook of a container that has one) mountinfo shows the
// host's mount with a root of "/.." components: it is still the hierarchy
// root, and Namespaced makes Locate skip the namespaced /proc/*/cgroup path.
func (r CgroupResolver) mount() (cgroup.Mount, error) {
	file := path.Join(r.proc(), "self", "mountinfo")
	f, err := os.Open(file)
	if err != nil {
		return cgroup.Mount{}, fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	m, err := cgroup.ParseMountinfo(f)
	if err != nil {
		return cgroup.Mount{}, fmt.Errorf("find cgroup v2 mount in %s: %w", file, err)
	}
	return m, nil
}
