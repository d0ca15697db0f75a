package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// ErrRootCgroup refuses the root cgroup as a container's: no runtime runs a
// container there, and registering it would put every process on the host
// under the container's policy.
var ErrRootCgroup = errors.New("the root cgroup is not a container's")

// Cgroup is a container's resolved cgroup v2.
type Cgroup struct {
	Path string // v2 path, e.g. "/kubepods.slice/.../crio-ID.scope"
	Dir  string // directory on the cgroup2 mount
	ID   uint64
	From string // where the path came from, for logs and errors
}

// Container resolves the v2 path of a container's cgroup, read from the
// source named by from, to its directory and ID. It refuses the root cgroup
// and paths that climb out of the hierarchy.
func (m Mount) Container(v2path, from string) (Cgroup, error) {
	p, err := ContainerPath(v2path, from)
	if err != nil {
		return Cgroup{}, err
	}
	dir := m.Dir(p)
	id, err := ID(dir)
	if err != nil {
		return Cgroup{}, fmt.Errorf("cgroup from %s: unknown cgroup: %w", from, err)
	}
	return Cgroup{Path: p, Dir: dir, ID: id, From: from}, nil
}

// ContainerPath cleans the v2 path of a container's cgroup, read from the
// source named by from, refusing the root cgroup and paths that climb out of
// the hierarchy.
func ContainerPath(v2path, from string) (string, error) {
	if slices.Contains(strings.Split(v2path, "/"), "..") {
		return "", fmt.Errorf("cgroup from %s: %q lies outside this cgroup namespace", from, v2path)
	}
	p := path.Clean("/" + v2path)
	if p == "/" {
		return "", fmt.Errorf("cgroup from %s: %w", from, ErrRootCgroup)
	}
	return p, nil
}

// PathInProcFile returns the v2 path named by a /proc/<pid>/cgroup file. A
// reader inside a cgroup namespace cannot use it: the path there is relative
// to a root it cannot name.
func (m Mount) PathInProcFile(file string) (string, error) {
	if m.Namespaced {
		return "", fmt.Errorf("%s: the reader is in a cgroup namespace, whose paths are not host paths", file)
	}
	data, err := linux.ReadProcRecord(file, maxProcCgroup)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: the process does not exist: %w", file, err)
	} else if err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	p, err := procCgroupV2Path(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return "", fmt.Errorf("%s: %q lies outside this cgroup namespace", file, p)
	}
	return p, nil
}

// Locate finds a container's cgroup from a /proc/<pid>/cgroup file when
// procFile is set, else, or when that fails, from the OCI linux.cgroupsPath.
// The error names every source it tried.
func (m Mount) Locate(procFile, cgroupsPath string) (Cgroup, error) {
	var errs []error
	if procFile != "" {
		p, err := m.PathInProcFile(procFile)
		if err == nil {
			var c Cgroup
			if c, err = m.Container(p, procFile); err == nil {
				return c, nil
			}
		}
		errs = append(errs, err)
	}
	if cgroupsPath == "" && procFile != "" {
		errs = append(errs, errors.New("no linux.cgroupsPath to fall back to"))
	}
	if cgroupsPath != "" {
		from := "config.json linux.cgroupsPath " + strconv.Quote(cgroupsPath)
		p, err := ParseCgroupsPath(cgroupsPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
		} else if c, err := m.Container(p, from); err != nil {
			errs = append(errs, err)
		} else {
			return c, nil
		}
	}
	if len(errs) == 0 {
		return Cgroup{}, errors.New("find cgroup: neither a process nor linux.cgroupsPath known")
	}
	return Cgroup{}, fmt.Errorf("find cgroup: %w", errors.Join(errs...))
}
