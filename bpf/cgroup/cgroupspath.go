package cgroup

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// ParseCgroupsPath turns an OCI linux.cgroupsPath into a cgroup v2 path.
// Two forms exist: a cgroupfs path ("/a/b"), and systemd's
// "slice:prefix:name", which runc and crun place at
// /<expanded slice>/<prefix>-<name>.scope (or /<expanded slice>/<name> when
// name is itself a slice). A relative cgroupfs path depends on the runtime's
// own cgroup, which a reader of the spec cannot know, and is refused.
func ParseCgroupsPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty cgroupsPath")
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("cgroupsPath %q contains a NUL byte", p)
	}
	if !strings.HasPrefix(p, "/") && strings.Count(p, ":") == 2 {
		return systemdPath(p)
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("cgroupsPath %q is relative to the runtime's own cgroup, which is not known here", p)
	}
	// Clean under "/" so ".." cannot climb above the hierarchy root.
	return filepath.Clean(p), nil
}

func systemdPath(p string) (string, error) {
	parts := strings.SplitN(p, ":", 3)
	slice, prefix, name := parts[0], parts[1], parts[2]
	if name == "" {
		return "", fmt.Errorf("systemd cgroupsPath %q has no unit name", p)
	}
	if strings.Contains(name, "/") || strings.Contains(prefix, "/") {
		return "", fmt.Errorf("systemd cgroupsPath %q: prefix and name must not contain '/'", p)
	}
	if slice == "" {
		slice = "system.slice"
	}
	dir, err := ExpandSlice(slice)
	if err != nil {
		return "", fmt.Errorf("systemd cgroupsPath %q: %w", p, err)
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = prefix + "-" + name + ".scope"
	}
	return path.Join(dir, unit), nil
}

// ExpandSlice turns a systemd slice name into its cgroup path:
// "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice", "-.slice" is "/".
func ExpandSlice(slice string) (string, error) {
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok || base == "" {
		return "", fmt.Errorf("slice %q does not end in .slice", slice)
	}
	if strings.Contains(slice, "/") {
		return "", fmt.Errorf("slice %q contains '/'", slice)
	}
	if base == "-" {
		return "/", nil
	}
	var b strings.Builder
	prefix := ""
	for _, component := range strings.Split(base, "-") {
		if component == "" {
			return "", fmt.Errorf("slice %q has an empty component", slice)
		}
		b.WriteString("/" + prefix + component + ".slice")
		prefix += component + "-"
	}
	return b.String(), nil
}
