package hook

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
)

// Cgroup is a container's resolved cgroup v2.
type Cgroup struct {
	Path string // v2 path, e.g. "/kubepods.slice/.../crio-ID.scope"
	Dir  string // directory on the host's cgroup2 mount
	ID   uint64
	From string // where the path came from, for the log
}

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
func (r CgroupResolver) Resolve(stage Stage, pid int, cgroupsPath string) (Cgroup, error) {
	mount, nsRelative, err := r.mount()
	if err != nil {
		return Cgroup{}, err
	}
	var procFile string
	switch stage {
	case StageCreateContainer:
		procFile = path.Join(r.proc(), "self", "cgroup")
	case StageCreateRuntime:
		procFile = path.Join(r.proc(), strconv.Itoa(pid), "cgroup")
	default:
		return Cgroup{}, fmt.Errorf("resolve cgroup: stage %s has no container cgroup", stage)
	}
	cg, procErr := r.fromProc(mount, procFile, nsRelative)
	if procErr == nil {
		return cg, nil
	}
	if cgroupsPath == "" {
		return Cgroup{}, fmt.Errorf("%w; config.json has no linux.cgroupsPath to fall back to", procErr)
	}
	cg, cfgErr := fromCgroupsPath(mount, cgroupsPath)
	if cfgErr != nil {
		return Cgroup{}, fmt.Errorf("%w; fallback: %w", procErr, cfgErr)
	}
	return cg, nil
}

func (r CgroupResolver) fromProc(mount cgroup.Mount, file string, nsRelative bool) (Cgroup, error) {
	if nsRelative {
		// The hook runs inside the container's cgroup namespace: the path
		// in /proc/*/cgroup is relative to a root we cannot name.
		return Cgroup{}, fmt.Errorf("cgroup from %s: the hook is in a cgroup namespace, paths there are not host paths", file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Cgroup{}, fmt.Errorf("cgroup from %s: process does not exist: %w", file, err)
		}
		return Cgroup{}, fmt.Errorf("cgroup from %s: %w", file, err)
	}
	p, err := cgroup.ParseProcCgroup(bytes.NewReader(data))
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup from %s: %w", file, err)
	}
	return resolveV2Path(mount, p, file)
}

func fromCgroupsPath(mount cgroup.Mount, cgroupsPath string) (Cgroup, error) {
	p, err := cgroup.ParseCgroupsPath(cgroupsPath)
	if err != nil {
		return Cgroup{}, err
	}
	return resolveV2Path(mount, p, "config.json linux.cgroupsPath "+strconv.Quote(cgroupsPath))
}

func resolveV2Path(mount cgroup.Mount, p, from string) (Cgroup, error) {
	if p == "/" {
		// No runtime runs a container in the root cgroup; registering it
		// would put every process on the host under the container's policy.
		return Cgroup{}, fmt.Errorf("cgroup from %s: the root cgroup is not a container's", from)
	}
	dir := mount.Dir(p)
	id, err := cgroup.ID(dir)
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup from %s: unknown cgroup: %w", from, err)
	}
	return Cgroup{Path: p, Dir: dir, ID: id, From: from}, nil
}

// mount finds the host's cgroup2 mount. Inside a cgroup namespace (a
// createContainer hook of a container that has one) mountinfo shows the
// host's mount with a root of "/.." components: it is still the hierarchy
// root, and Namespaced reports that /proc/*/cgroup paths are namespaced.
func (r CgroupResolver) mount() (m cgroup.Mount, nsRelative bool, err error) {
	file := path.Join(r.proc(), "self", "mountinfo")
	f, err := os.Open(file)
	if err != nil {
		return cgroup.Mount{}, false, fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	m, err = cgroup.ParseMountinfo(f)
	if err != nil {
		return cgroup.Mount{}, false, fmt.Errorf("find cgroup v2 mount in %s: %w", file, err)
	}
	return m, m.Namespaced, nil
}
