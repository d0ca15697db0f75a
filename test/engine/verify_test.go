package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// A registrar's cgroup claim is checked against where the kernel puts the
// container's process: a claim the kernel contradicts is refused with both
// cgroups named, a registration naming only the process takes the process's
// cgroup, and crun's systemd layout (the process in <scope>/container) is
// accepted for the scope.
func TestCgroupClaimVerified(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	claimed, actual := harness.NewCgroup(t), harness.NewCgroup(t)
	proc := actual.Start(t, "/bin/sleep", "999")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctr := func(id string, cg harness.Cgroup, pid int) api.Container {
		return api.Container{ID: id, CgroupPath: cg.Dir, Pid: pid, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}}
	}

	_, err := e.Client().Register(ctx, ctr("wrong", claimed, proc.Process.Pid))
	if err == nil || !strings.Contains(err.Error(), claimed.Dir) || !strings.Contains(err.Error(), actual.Dir) {
		t.Errorf("claim of %s for a process in %s: want refused naming both, got %v", claimed.Dir, actual.Dir, err)
	}
	t.Logf("refused: %v", err)
	if r := claimed.Run(t, binary); r.ExitCode != 0 {
		t.Errorf("%s in the wrongly claimed cgroup after the refusal: %v", binary, r)
	}

	// Only the process named: the engine registers its cgroup.
	got, err := e.Client().Register(ctx, api.Container{ID: "by-pid", Pid: proc.Process.Pid, Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}})
	if err != nil || got.CgroupID != actual.ID {
		t.Fatalf("registration by pid: %+v, %v; want cgroup %d", got, err, actual.ID)
	}
	expectEnforced(t, actual, binary, addr)

	// A process in a deeper cgroup that is not crun's "container" child.
	other := claimed.Child(t, "other")
	deep := other.Start(t, "/bin/sleep", "999")
	if _, err := e.Client().Register(ctx, ctr("deep", claimed, deep.Process.Pid)); err == nil || !strings.Contains(err.Error(), other.Dir) {
		t.Errorf("claim of %s for a process in %s: want refused, got %v", claimed.Dir, other.Dir, err)
	}

	// crun's systemd driver: the scope is named, the process sits in
	// <scope>/container. The scope is registered and covers the child.
	scope := harness.NewCgroup(t)
	inner := scope.Child(t, "container")
	crunProc := inner.Start(t, "/bin/sleep", "999")
	got, err = e.Client().Register(ctx, ctr("crun", scope, crunProc.Process.Pid))
	if err != nil || got.CgroupID != scope.ID {
		t.Fatalf("crun layout: %+v, %v; want the scope %d registered", got, err, scope.ID)
	}
	expectEnforced(t, inner, binary, addr)
}

// A registrar that runs inside the container (a createContainer hook) is
// itself a witness: the engine reads its cgroup from its peer credentials.
func TestCgroupClaimCheckedAgainstPeer(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	claimed, actual := harness.NewCgroup(t), harness.NewCgroup(t)
	register := func(id string, cg harness.Cgroup) map[string]any {
		t.Helper()
		req := fmt.Sprintf(`{"op":"register","container":{"id":%q,"cgroupPath":%q,"peerInContainer":true,"namespace":"shop","labels":{"app":"web","tier":"front"}}}`, id, cg.Dir)
		r := actual.Run(t, "python3", "-c", `import socket,sys,json
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n")
print(s.makefile().readline())`, e.Socket, req)
		var resp map[string]any
		if r.ExitCode != 0 || json.Unmarshal([]byte(r.Stdout), &resp) != nil {
			t.Fatalf("registrar in %s: %v", actual.Dir, r)
		}
		return resp
	}
	if resp := register("lying", claimed); resp["error"] == nil || !strings.Contains(resp["error"].(string), actual.Dir) {
		t.Errorf("a registrar in %s claiming %s: want refused naming its cgroup, got %v", actual.Dir, claimed.Dir, resp)
	}
	if resp := register("honest", actual); resp["error"] != nil {
		t.Fatalf("a registrar in %s claiming its own cgroup: %v", actual.Dir, resp["error"])
	}
	expectEnforced(t, actual, binary, addr)
	if r := claimed.Run(t, binary); r.ExitCode != 0 {
		t.Errorf("%s in the wrongly claimed cgroup: %v", binary, r)
	}
}
