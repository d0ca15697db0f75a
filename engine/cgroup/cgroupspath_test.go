package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/require"
)

func TestParseCgroupsPath(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "/hf/c1", want: "/hf/c1"},
		{in: "/hf//c1/", want: "/hf/c1"},
		{in: "/a/../../etc", want: "/etc"},
		{in: "/..", want: "/"},
		{in: "system.slice:runc:abc", want: "/system.slice/runc-abc.scope"},
		{in: ":runc:abc", want: "/system.slice/runc-abc.scope"},
		{in: "kubepods-besteffort-pod12.slice:crio:abc", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/crio-abc.scope"},
		{in: "kubepods-besteffort-pod12.slice:cri-containerd:abc", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"},
		{in: "-.slice:p:abc", want: "/p-abc.scope"},
		{in: "machine.slice:p:my.slice", want: "/machine.slice/my.slice"},
		{in: "", wantErr: "empty"},
		{in: "hf/c1", wantErr: "relative"},
		{in: "system.slice:runc:", wantErr: "no unit name"},
		{in: "system:runc:abc", wantErr: "does not end in .slice"},
		{in: "a--b.slice:runc:abc", wantErr: "empty component"},
		{in: "system.slice:runc:a/b", wantErr: "must not contain '/'"},
		{in: "/a\x00b", wantErr: "NUL"},
	}
	for _, tt := range tests {
		got, err := ParseCgroupsPath(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCgroupsPath(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseCgroupsPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// processInCgroup runs a process in a fresh cgroup and returns its pid,
// the cgroup's v2 path and ID.
func processInCgroup(t *testing.T) (Mount, int, string, uint64) {
	t.Helper()
	require.Root(t)
	m, err := Detect()
	require.Privileged(t, "cgroup v2", err)
	dir, err := os.MkdirTemp(m.Root, "holdfast-cgroup-test-")
	if err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	path := "/" + filepath.Base(dir)
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		// The kernel empties the cgroup shortly after the reap, not at it.
		var err error
		for range 100 {
			if err = os.Remove(dir); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, cmd.Process.Pid, path, id
}

func TestFind(t *testing.T) {
	m, pid, path, id := processInCgroup(t)
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
	_, _, err := m.Find(1<<30, "/holdfast-test-no-such-cgroup")
	if err == nil || !strings.Contains(err.Error(), "pid 1073741824") || !strings.Contains(err.Error(), "holdfast-test-no-such-cgroup") {
		t.Errorf("error = %v, want one naming both the pid and the path", err)
	}
	if _, _, err := m.Find(0, ""); err == nil {
		t.Error("no pid and no path gave no error")
	}
	// Inside a cgroup namespace /proc paths are not host paths: refused,
	// and the spec's path is used instead.
	ns := m
	ns.Namespaced = true
	if _, err := ns.PathOfPID(pid); err == nil || !strings.Contains(err.Error(), "outside this cgroup namespace") {
		t.Errorf("namespaced PathOfPID: %v", err)
	}
	if got, _, err := ns.Find(pid, path); err != nil || got != path {
		t.Errorf("namespaced Find fell back to %q, %v; want %q", got, err, path)
	}
}
