// Package cgroup finds the cgroup v2 hierarchy (pure v2 or hybrid), maps
// processes and paths into it, and turns directories into cgroup IDs. It never
// assumes where v2 is mounted: it reads /proc/self/mountinfo.
//
// Any holdfast package may import it (bpf, the engine, both registrars,
// tests); it imports only bpf/linux. It lives under bpf/ so that bpf, the
// bottom layer, can use it without importing engine/.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// Layout modes.
const (
	Unified = "unified" // cgroup v2 only
	Hybrid  = "hybrid"  // v1 controllers plus a v2 mount beside them
)

// ErrNoV2 means the host has no cgroup v2 mount, which holdfast needs.
var ErrNoV2 = errors.New("no cgroup2 filesystem mounted")

// Mount is where cgroup v2 lives on this host.
type Mount struct {
	Root string // mount point of the v2 hierarchy
	Mode string // Unified or Hybrid
	// Namespaced: the reader is inside a cgroup namespace (mountinfo shows
	// the hierarchy root as "/.."), so /proc/*/cgroup paths it reads are
	// relative to a root it cannot name.
	Namespaced bool
}

// Detect reads /proc/self/mountinfo.
func Detect() (Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Mount{}, fmt.Errorf("detect cgroup v2: %w", err)
	}
	defer f.Close()
	m, err := ParseMountinfo(f)
	if err != nil {
		return Mount{}, fmt.Errorf("detect cgroup v2 from /proc/self/mountinfo: %w", err)
	}
	return m, nil
}

// ParseMountinfo finds the cgroup2 mount in a mountinfo file. If several are
// mounted, the one whose root is the hierarchy root and which is shortest
// wins, so a bind mount of a sub-cgroup is not taken for the root. Inside a
// cgroup namespace the hierarchy root shows as "/.." components.
func ParseMountinfo(r io.Reader) (Mount, error) {
	var v2 []string
	v1, namespaced := false, false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Only cgroup lines matter; a node with many containers has
		// thousands of others. Spaces in paths are escaped (\040), so
		// " - " is the separator before the filesystem type.
		if !bytes.Contains(sc.Bytes(), []byte(" - cgroup")) {
			continue
		}
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		switch fields[sep+1] {
		case "cgroup2":
			switch {
			case fields[3] == "/":
				v2 = append(v2, unescape(fields[4]))
			case onlyDotDot(fields[3]):
				v2 = append(v2, unescape(fields[4]))
				namespaced = true
			}
		case "cgroup":
			v1 = true
		}
	}
	if err := sc.Err(); err != nil {
		return Mount{}, fmt.Errorf("read mountinfo: %w", err)
	}
	if len(v2) == 0 {
		return Mount{}, ErrNoV2
	}
	root := v2[0]
	for _, p := range v2[1:] {
		if len(p) < len(root) {
			root = p
		}
	}
	mode := Unified
	if v1 {
		mode = Hybrid
	}
	return Mount{Root: root, Mode: mode, Namespaced: namespaced}, nil
}

// onlyDotDot reports whether a mount root is "/..", "/../.." and so on.
func onlyDotDot(root string) bool {
	if root == "" {
		return false
	}
	for root != "" {
		var ok bool
		if root, ok = strings.CutPrefix(root, "/.."); !ok {
			return false
		}
	}
	return true
}

// unescape undoes mountinfo's octal escapes (\040 for space and so on).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// maxProcCgroup bounds a /proc/PID/cgroup file: one line per hierarchy,
// each a path of at most PATH_MAX.
const maxProcCgroup = 64 << 10

// ParseProcCgroup returns the v2 path (the "0::" line) of a /proc/PID/cgroup
// file. It reads the file whole: it is on every registration's path, and a
// line scanner's buffer cost more than the file.
func ParseProcCgroup(r io.Reader) (string, error) {
	data, err := linux.ReadLimited(r, maxProcCgroup, "cgroup file")
	if err != nil {
		return "", err
	}
	return procCgroupV2Path(data)
}

// procCgroupV2Path is the v2 path in a /proc/PID/cgroup file's contents.
func procCgroupV2Path(data []byte) (string, error) {
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "0::"); ok {
			if !strings.HasPrefix(rest, "/") {
				return "", fmt.Errorf("cgroup v2 path %q is not absolute", rest)
			}
			return rest, nil
		}
	}
	return "", errors.New("no cgroup v2 (0::) entry")
}

// Dir is the absolute directory of a v2 cgroup path such as "/a/b".
func (m Mount) Dir(v2path string) string {
	return filepath.Join(m.Root, filepath.Clean("/"+v2path))
}

// DirOfPID returns the v2 cgroup directory of a process.
func (m Mount) DirOfPID(pid int) (string, error) {
	p, err := m.PathOfPID(pid)
	if err != nil {
		return "", err
	}
	return m.Dir(p), nil
}

// PathOfPID returns the v2 cgroup path of a process. It refuses a process
// whose cgroup lies outside the reader's cgroup namespace ("/../x"): that
// path names nothing under our mount.
func (m Mount) PathOfPID(pid int) (string, error) {
	p, err := m.PathInProcFile(procCgroupFile(pid))
	if err != nil {
		return "", fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return p, nil
}

// Find locates a container's cgroup: from its process when one runs
// (pid > 0), else from the OCI linux.cgroupsPath. It returns the v2 path
// and the cgroup ID, or an error naming every source it tried.
func (m Mount) Find(pid int, cgroupsPath string) (string, uint64, error) {
	procFile := ""
	if pid > 0 {
		procFile = procCgroupFile(pid)
	}
	c, err := m.Locate(procFile, cgroupsPath)
	return c.Path, c.ID, err
}

func procCgroupFile(pid int) string { return fmt.Sprintf("/proc/%d/cgroup", pid) }

// ID returns the cgroup ID of a v2 cgroup directory: its inode number, the
// value bpf_get_current_cgroup_id() returns for tasks inside it. It refuses
// directories that are not on a cgroup2 filesystem.
func ID(dir string) (uint64, error) {
	magic, err := linux.FSMagic(dir)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	if magic != linux.Cgroup2Magic {
		return 0, fmt.Errorf("cgroup id of %s: not a cgroup v2 directory (fs magic %#x)", dir, magic)
	}
	_, ino, err := linux.DirDevInode(dir)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	return ino, nil
}
