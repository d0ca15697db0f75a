package cgroup_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// TestFind is an external test: test/harness, which starts its process,
// imports this package.
func TestFind(t *testing.T) {
	require.Root(t)
	m, err := cgroup.Detect()
	require.Privileged(t, "cgroup v2", err)
	cg := harness.NewCgroup(t)
	pid := cg.Start(t, "sleep", "300").Process.Pid
	path, id := cg.Path, cg.ID
	for _, tc := range []struct {
		name        string
		pid         int
		cgroupsPath string
	}{
		{"from the pid", pid, ""},
		{"pid wins over a wrong path", pid, "/holdfast-test-no-such-cgroup"},
		{"from the path", 0, path},
		{"path when the pid is gone", 1 << 30, path},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotPath, gotID, err := m.Find(tc.pid, tc.cgroupsPath)
			if err != nil || gotPath != path || gotID != id {
				t.Errorf("Find(%d, %q) = %q %d %v; want %q %d", tc.pid, tc.cgroupsPath, gotPath, gotID, err, path, id)
			}
		})
	}
	_, _, err = m.Find(1<<30, "/holdfast-test-no-such-cgroup")
	if err == nil || !strings.Contains(err.Error(), "/proc/1073741824/cgroup") || !strings.Contains(err.Error(), "holdfast-test-no-such-cgroup") {
		t.Errorf("error = %v, want one naming both the pid and the path", err)
	}
	if _, _, err := m.Find(0, ""); err == nil {
		t.Error("no pid and no path gave no error")
	}
	// The root cgroup is no container's, however it is named.
	for _, root := range []string{"/", "", "//"} {
		if _, err := m.Container(root, "test"); !errors.Is(err, cgroup.ErrRootCgroup) {
			t.Errorf("Container(%q) = %v, want ErrRootCgroup", root, err)
		}
	}
	if _, _, err := m.Find(0, "/"); !errors.Is(err, cgroup.ErrRootCgroup) {
		t.Errorf("Find(0, \"/\") = %v, want ErrRootCgroup", err)
	}
	// Inside a cgroup namespace /proc paths are not host paths: refused,
	// and the spec's path is used instead.
	ns := m
	ns.Namespaced = true
	if _, err := ns.PathOfPID(pid); err == nil || !strings.Contains(err.Error(), "cgroup namespace") {
		t.Errorf("namespaced PathOfPID: %v", err)
	}
	if got, _, err := ns.Find(pid, path); err != nil || got != path {
		t.Errorf("namespaced Find fell back to %q, %v; want %q", got, err, path)
	}
}
