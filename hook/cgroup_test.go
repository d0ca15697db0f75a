package hook

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// newTestCgroup is a real cgroup v2 directory owned by one test, and the
// mount it lives on.
func newTestCgroup(t *testing.T) (harness.Cgroup, cgroup.Mount) {
	t.Helper()
	return harness.NewCgroup(t), harness.CgroupMount(t)
}

func TestResolveCreateRuntime(t *testing.T) {
	cg, _ := newTestCgroup(t)
	pid := cg.Start(t, "sleep", "600").Process.Pid
	var r CgroupResolver

	got, err := r.Resolve(ocihook.StageCreateRuntime, pid, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cg.ID || got.Path != cg.Path || got.Dir != cg.Dir {
		t.Fatalf("Resolve = %+v, want id %d path %s", got, cg.ID, cg.Path)
	}
	if !strings.Contains(got.From, fmt.Sprintf("/proc/%d/cgroup", pid)) {
		t.Errorf("From = %q, want the pid's cgroup file", got.From)
	}

	// A pid that is gone falls back to config.json's cgroupsPath.
	dead := harness.ExitedPID(t)
	got, err = r.Resolve(ocihook.StageCreateRuntime, dead, cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cg.ID || !strings.Contains(got.From, "cgroupsPath") {
		t.Fatalf("fallback Resolve = %+v, want id %d from cgroupsPath", got, cg.ID)
	}

	// Neither: the error names both failures.
	_, err = r.Resolve(ocihook.StageCreateRuntime, dead, "")
	if err == nil || !strings.Contains(err.Error(), "process does not exist") || !strings.Contains(err.Error(), "no linux.cgroupsPath") {
		t.Fatalf("dead pid without cgroupsPath: error = %v", err)
	}
	_, err = r.Resolve(ocihook.StageCreateRuntime, dead, cg.Path+"-missing")
	if err == nil || !strings.Contains(err.Error(), "unknown cgroup") || !strings.Contains(err.Error(), cg.Path+"-missing") {
		t.Fatalf("dead pid with an unknown cgroupsPath: error = %v", err)
	}
}

// fakeProc builds a procfs stand-in whose self/ files are given, so the
// createContainer view (the hook inside the container's cgroup, maybe in a
// cgroup namespace) can be reproduced around a real cgroup.
func fakeProc(t *testing.T, mountinfo, selfCgroup string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "self"), 0o755)
	os.WriteFile(filepath.Join(dir, "self", "mountinfo"), []byte(mountinfo), 0o644)
	os.WriteFile(filepath.Join(dir, "self", "cgroup"), []byte(selfCgroup), 0o644)
	return dir
}

func TestResolveCreateContainer(t *testing.T) {
	cg, mount := newTestCgroup(t)
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}

	host := CgroupResolver{Proc: fakeProc(t, string(mountinfo), "1:cpu:/\n0::"+cg.Path+"\n")}
	got, err := host.Resolve(ocihook.StageCreateContainer, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cg.ID {
		t.Fatalf("Resolve = %+v, want id %d", got, cg.ID)
	}

	// In a cgroup namespace the hook sees "0::/" and the mount's root as
	// "/..": only config.json can name the cgroup.
	nsMountinfo := strings.Replace(string(mountinfo), " / "+mount.Root+" ", " /../.. "+mount.Root+" ", 1)
	if nsMountinfo == string(mountinfo) {
		t.Fatalf("could not find the cgroup2 mount %s in mountinfo", mount.Root)
	}
	ns := CgroupResolver{Proc: fakeProc(t, nsMountinfo, "0::/\n")}
	got, err = ns.Resolve(ocihook.StageCreateContainer, 1, cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != cg.ID || !strings.Contains(got.From, "cgroupsPath") {
		t.Fatalf("namespaced Resolve = %+v, want id %d from cgroupsPath", got, cg.ID)
	}
	_, err = ns.Resolve(ocihook.StageCreateContainer, 1, "")
	if err == nil || !strings.Contains(err.Error(), "cgroup namespace") {
		t.Fatalf("namespaced without cgroupsPath: error = %v", err)
	}

	// Never the root cgroup, which would put the whole host under a policy.
	root := CgroupResolver{Proc: fakeProc(t, string(mountinfo), "0::/\n")}
	_, err = root.Resolve(ocihook.StageCreateContainer, 1, "")
	if err == nil || !strings.Contains(err.Error(), "root cgroup") {
		t.Fatalf("root cgroup: error = %v", err)
	}
	_, err = root.Resolve(ocihook.StageCreateContainer, 1, "/")
	if err == nil || !strings.Contains(err.Error(), "root cgroup") {
		t.Fatalf("root cgroupsPath: error = %v", err)
	}

	noV2 := CgroupResolver{Proc: fakeProc(t, "45 44 254:0 / / rw - ext4 /dev/vda rw\n", "0::/x\n")}
	if _, err := noV2.Resolve(ocihook.StageCreateContainer, 1, "/x"); err == nil || !strings.Contains(err.Error(), "no cgroup2") {
		t.Fatalf("no cgroup2 mount: error = %v", err)
	}
	if _, err := host.Resolve(ocihook.StagePoststop, 1, cg.Path); err == nil {
		t.Fatal("Resolve at poststop succeeded")
	}
}
