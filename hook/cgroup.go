package hook

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast-dev/holdfast/engine/cgroup"
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
	p, err := ParseCgroupsPath(cgroupsPath)
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
// root, and nsRelative reports that /proc/*/cgroup paths are namespaced.
func (r CgroupResolver) mount() (m cgroup.Mount, nsRelative bool, err error) {
	file := path.Join(r.proc(), "self", "mountinfo")
	data, err := os.ReadFile(file)
	if err != nil {
		return cgroup.Mount{}, false, fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	fixed, nsRelative := rootAboveNamespace(data)
	m, err = cgroup.ParseMountinfo(bytes.NewReader(fixed))
	if err != nil {
		return cgroup.Mount{}, false, fmt.Errorf("find cgroup v2 mount in %s: %w", file, err)
	}
	return m, nsRelative, nil
}

// rootAboveNamespace rewrites cgroup2 mount roots made only of ".."
// components to "/" and reports whether it did.
func rootAboveNamespace(mountinfo []byte) ([]byte, bool) {
	var out bytes.Buffer
	rewrote := false
	rd := bufio.NewReader(bytes.NewReader(mountinfo))
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			fields := strings.Fields(line)
			if len(fields) > 4 && isCgroup2(fields) && onlyDotDot(fields[3]) {
				fields[3] = "/"
				line = strings.Join(fields, " ") + "\n"
				rewrote = true
			}
			out.WriteString(line)
		}
		if err == io.EOF {
			break
		}
	}
	return out.Bytes(), rewrote
}

func isCgroup2(fields []string) bool {
	for i, f := range fields {
		if f == "-" {
			return i+1 < len(fields) && fields[i+1] == "cgroup2"
		}
	}
	return false
}

func onlyDotDot(root string) bool {
	rest := root
	for rest != "" {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, "/.."); !ok {
			return false
		}
	}
	return root != ""
}

// ParseCgroupsPath turns an OCI linux.cgroupsPath into a cgroup v2 path.
// Two forms exist: a cgroupfs path ("/a/b"), and systemd's
// "slice:prefix:name", which runc and crun place at
// /<expanded slice>/<prefix>-<name>.scope (or /<expanded slice>/<name> when
// name is itself a slice). A relative cgroupfs path depends on the runtime's
// own cgroup, which the hook cannot know, and is refused.
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
		return "", fmt.Errorf("cgroupsPath %q is relative to the runtime's own cgroup, which the hook cannot know", p)
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
