package bpf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// fmodeBacking is FMODE_BACKING of the running kernel: the f_mode bit of a
// file that overlayfs (and FUSE passthrough) opens on the user's behalf,
// whose user_path is the path the user opened. It appeared in 6.5 as bit 25
// and moved to bit 24 in 6.13; 0 before 6.5, where such files carry the
// user's path themselves. The programs check that a file with the bit has a
// plausible user_path, so a backport that moved the bit degrades to judging
// the layer file by its own path.
func fmodeBacking() (uint32, error) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return 0, fmt.Errorf("read kernel release: %w", err)
	}
	return fmodeBackingOf(strings.TrimSpace(string(b)))
}

func fmodeBackingOf(release string) (uint32, error) {
	major, minor, err := kernelVersion(release)
	if err != nil {
		return 0, err
	}
	switch {
	case major > 6 || major == 6 && minor >= 13:
		return 1 << 24, nil
	case major == 6 && minor >= 5:
		return 1 << 25, nil
	}
	return 0, nil
}

// kernelVersion parses "6.18.44-fc-v1045" into 6, 18.
func kernelVersion(release string) (major, minor int, err error) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("parse kernel release %q: want MAJOR.MINOR", release)
	}
	major, err = strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("parse kernel release %q: %w", release, err)
	}
	m := parts[1]
	if i := strings.IndexFunc(m, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		m = m[:i]
	}
	minor, err = strconv.Atoi(m)
	if err != nil {
		return 0, 0, fmt.Errorf("parse kernel release %q: %w", release, err)
	}
	return major, minor, nil
}
