package engine_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// busyboxBytes is the host's busybox binary, for roots a test builds.
func busyboxBytes(t *testing.T) []byte {
	t.Helper()
	require.Root(t)
	path, err := exec.LookPath("busybox")
	if err != nil {
		require.Privileged(t, "busybox", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// registerChrooted starts a busybox sleep in cg chrooted into root and,
// once it is inside root, as a registrar would, registers it as container
// id of a shop pod labelled app=web.
func registerChrooted(t *testing.T, e *harness.Engine, cg harness.Cgroup, root, id string) {
	t.Helper()
	proc := cg.Start(t, "chroot", root, "/bin/busybox", "sleep", "600")
	rootLink := fmt.Sprintf("/proc/%d/root", proc.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if r, _ := os.Readlink(rootLink); r == root {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s", rootLink, root)
		}
	}
	ctr := api.Container{ID: id, CgroupID: cg.ID, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}, Name: "main", Pid: proc.Process.Pid}
	if _, err := e.Client().Register(context.Background(), ctr); err != nil {
		t.Fatal(err)
	}
}

// startAdopting starts the stopped engine again and checks it adopted the
// pinned programs and maps rather than loading new ones.
func startAdopting(t *testing.T, e *harness.Engine) {
	t.Helper()
	e.Start(t)
	st, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Adopted {
		t.Error("restarted engine did not adopt the pins")
	}
}
