package cri

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/holdfast-dev/holdfast/engine/cgroup"
)

// ContainerCgroup finds a container's cgroup v2 path and ID: from its
// process when one runs (pid > 0), else from the OCI spec's
// linux.cgroupsPath, in cgroupfs ("/a/b") or systemd ("slice:prefix:name")
// notation. Reading /proc/<pid>/cgroup needs the host's cgroup namespace.
func ContainerCgroup(m cgroup.Mount, pid int, cgroupsPath string) (string, uint64, error) {
	var errs []error
	if pid > 0 {
		path, id, err := cgroupOfPID(m, pid)
		if err == nil {
			return path, id, nil
		}
		errs = append(errs, err)
	}
	if cgroupsPath != "" {
		path, err := CgroupsPathToV2(cgroupsPath)
		if err == nil {
			var id uint64
			if id, err = cgroup.ID(m.Dir(path)); err == nil {
				return path, id, nil
			}
		}
		errs = append(errs, fmt.Errorf("linux.cgroupsPath %q: %w", cgroupsPath, err))
	}
	if len(errs) == 0 {
		return "", 0, errors.New("neither a pid nor linux.cgroupsPath known")
	}
	return "", 0, errors.Join(errs...)
}

func cgroupOfPID(m cgroup.Mount, pid int) (string, uint64, error) {
	file := fmt.Sprintf("/proc/%d/cgroup", pid)
	f, err := os.Open(file)
	if err != nil {
		return "", 0, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	defer f.Close()
	path, err := hostV2Path(f)
	if err != nil {
		return "", 0, fmt.Errorf("cgroup of pid %d: %s: %w", pid, file, err)
	}
	id, err := cgroup.ID(m.Dir(path))
	if err != nil {
		return "", 0, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return path, id, nil
}

// CgroupsPathToV2 turns an OCI linux.cgroupsPath into a v2 path: cgroupfs
// paths are taken as they are, systemd's "slice:prefix:name" is expanded
// the way runc does it.
func CgroupsPathToV2(cp string) (string, error) {
	if strings.HasPrefix(cp, "/") {
		return cp, nil
	}
	parts := strings.Split(cp, ":")
	if len(parts) != 3 {
		return "", errors.New("neither an absolute path nor systemd slice:prefix:name")
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	dir, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = prefix + "-" + name + ".scope"
	}
	return strings.TrimSuffix(dir, "/") + "/" + unit, nil
}

// expandSlice maps "a-b-c.slice" to "/a.slice/a-b.slice/a-b-c.slice".
func expandSlice(slice string) (string, error) {
	if slice == "" {
		slice = "system.slice"
	}
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok || base == "" || strings.Contains(base, "/") {
		return "", fmt.Errorf("invalid systemd slice %q", slice)
	}
	if base == "-" {
		return "/", nil
	}
	var path, prefix strings.Builder
	for i, part := range strings.Split(base, "-") {
		if part == "" {
			return "", fmt.Errorf("invalid systemd slice %q", slice)
		}
		if i > 0 {
			prefix.WriteString("-")
		}
		prefix.WriteString(part)
		path.WriteString("/" + prefix.String() + ".slice")
	}
	return path.String(), nil
}

// hostV2Path reads the v2 path from a /proc/<pid>/cgroup file. A process
// outside our cgroup namespace shows up relative to its root ("/../.."), a
// path that names nothing under our mount.
func hostV2Path(r io.Reader) (string, error) {
	path, err := cgroup.ParseProcCgroup(r)
	if err != nil {
		return "", err
	}
	if slices.Contains(strings.Split(path, "/"), "..") {
		return "", fmt.Errorf("%q lies outside this cgroup namespace", path)
	}
	return path, nil
}
