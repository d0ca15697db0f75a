package cri

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/cgroup"
	"github.com/holdfast-dev/holdfast/test/require"
)

func TestCgroupsPathToV2(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "/k8s.io/abc", want: "/k8s.io/abc"},
		{in: "kubepods-besteffort-pod12.slice:cri-containerd:abc",
			want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"},
		{in: "system.slice:docker:x", want: "/system.slice/docker-x.scope"},
		{in: ":cri:x", want: "/system.slice/cri-x.scope"},
		{in: "-.slice:p:n", want: "/p-n.scope"},
		{in: "a.slice:p:sub.slice", want: "/a.slice/sub.slice"},
		{in: "k8s.io/abc", err: "neither an absolute path"},
		{in: "notaslice:p:n", err: `invalid systemd slice "notaslice"`},
		{in: "a--b.slice:p:n", err: `invalid systemd slice "a--b.slice"`},
	} {
		got, err := CgroupsPathToV2(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("CgroupsPathToV2(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CgroupsPathToV2(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// processInCgroup runs a process in a fresh cgroup and returns its pid,
// the cgroup's v2 path and ID.
func processInCgroup(t *testing.T) (cgroup.Mount, int, string, uint64) {
	t.Helper()
	require.Root(t)
	m, err := cgroup.Detect()
	require.Privileged(t, "cgroup v2", err)
	dir, err := os.MkdirTemp(m.Root, "holdfast-cri-test-")
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
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m, cmd.Process.Pid, path, id
}

func TestContainerCgroup(t *testing.T) {
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
			gotPath, gotID, err := ContainerCgroup(m, tc.pid, tc.cgroupsPath)
			if err != nil || gotPath != path || gotID != id {
				t.Errorf("ContainerCgroup(%d, %q) = %q %d %v; want %q %d", tc.pid, tc.cgroupsPath, gotPath, gotID, err, path, id)
			}
		})
	}
	_, _, err := ContainerCgroup(m, 1<<30, "/holdfast-test-no-such-cgroup")
	if err == nil || !strings.Contains(err.Error(), "pid 1073741824") || !strings.Contains(err.Error(), "holdfast-test-no-such-cgroup") {
		t.Errorf("error = %v, want one naming both the pid and the path", err)
	}
	if _, _, err := ContainerCgroup(m, 0, ""); err == nil {
		t.Error("no pid and no path gave no error")
	}
}

func TestGRPCTarget(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///run/containerd/containerd.sock": "unix:///run/containerd/containerd.sock",
		"/run/crio/crio.sock":                    "unix:///run/crio/crio.sock",
	} {
		if got, err := grpcTarget(in); err != nil || got != want {
			t.Errorf("grpcTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"tcp://127.0.0.1:1234", "run/containerd.sock", ""} {
		if _, err := grpcTarget(bad); err == nil || !strings.Contains(err.Error(), "unix:///") {
			t.Errorf("grpcTarget(%q) error = %v", bad, err)
		}
	}
}

func TestHostV2Path(t *testing.T) {
	got, err := hostV2Path(strings.NewReader("12:pids:/k8s.io/a\n0::/k8s.io/a\n"))
	if err != nil || got != "/k8s.io/a" {
		t.Errorf("hostV2Path = %q, %v", got, err)
	}
	// Read from inside a private cgroup namespace.
	if _, err := hostV2Path(strings.NewReader("0::/../../kubepods/pod1/c1\n")); err == nil || !strings.Contains(err.Error(), "outside this cgroup namespace") {
		t.Errorf("path outside the namespace: error = %v", err)
	}
}
