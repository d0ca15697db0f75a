package harness

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// UnmountBelow unmounts every mount below dir, deepest first: what a
// container runtime's storage (podman's overlay driver) leaves mounted.
func UnmountBelow(t testing.TB, dir string) {
	t.Helper()
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v: %s", m, err, out)
		}
	}
}
