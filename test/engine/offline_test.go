package engine_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// offlineIDPolicy kills /usr/bin/id in namespace offline.
var offlineIDPolicy = harness.Policy("offline-id", "namespaces: [offline]", "exec: {deny: [/usr/bin/id]}")

// TestRegisterOfflineCommand drives the registrars' slow path, `holdfast
// register-offline` and `unregister-offline`, as a hook running inside the
// container's own cgroup would: its protocol (stdin, stdout, exit codes),
// enforcement while the engine is down, and the engine adopting the result.
func TestRegisterOfflineCommand(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"id.yaml": offlineIDPolicy}})
	e.Terminate(t)
	cg := harness.NewCgroup(t)
	pid := cg.Start(t, "/bin/sleep", "600").Process.Pid
	offline := func(stdin string, args ...string) harness.Result {
		cmd := exec.Command(e.Bin, append(args, "--state-dir", e.StateDir, "--bpf-dir", e.BPFDir)...)
		cmd.Stdin = strings.NewReader(stdin)
		return cg.RunCmd(t, cmd)
	}
	ctr := api.Container{ID: "off-1", CgroupPath: cg.Path, Pid: pid, Namespace: "offline", Pod: "p", Source: "oci-hook"}
	in, err := json.Marshal(ctr)
	if err != nil {
		t.Fatal(err)
	}

	res := offline(string(in), fallback.CommandRegister)
	var got api.Container
	if res.ExitCode != 0 || json.Unmarshal([]byte(res.Stdout), &got) != nil {
		t.Fatalf("register-offline: %v", res)
	}
	if got.CgroupID != cg.ID || !slices.Equal(got.Policies, []string{"offline-id"}) {
		t.Errorf("register-offline answered %+v, want cgroup %d under offline-id", got, cg.ID)
	}
	if r := cg.Run(t, "/usr/bin/id"); !r.Killed() {
		t.Errorf("/usr/bin/id in a cgroup registered offline: %v, want SIGKILL", r)
	}

	// The cgroup above the registrar's own is refused, as the engine's is;
	// when that is the root, as no container's cgroup.
	parent := ctr
	parent.ID, parent.CgroupPath, parent.Pid = "off-parent", filepath.Dir(cg.Path), 0
	in, _ = json.Marshal(parent)
	if r := offline(string(in), fallback.CommandRegister); r.ExitCode != 1 || !strings.Contains(r.Stderr, "ancestor") && !strings.Contains(r.Stderr, "root cgroup is not a container's") {
		t.Errorf("register-offline of the registrar's parent cgroup: %v, want a refusal", r)
	}
	if r := offline(`{"id":"x","bogus":1}`, fallback.CommandRegister); r.ExitCode != 2 || !strings.Contains(r.Stderr, "bogus") {
		t.Errorf("register-offline of an unknown field: %v, want a usage error naming it", r)
	}
	if r := offline("", fallback.CommandUnregister, "--id", "never-registered"); r.ExitCode != fallback.ExitNotFound {
		t.Errorf("unregister-offline of an unknown id: %v, want exit %d", r, fallback.ExitNotFound)
	}

	e.Start(t)
	var found bool
	for _, c := range listContainers(t, e) {
		found = found || c.ID == "off-1" && c.CgroupID == cg.ID && c.Namespace == "offline" && c.Source == "oci-hook"
	}
	if !found {
		t.Fatalf("engine does not list off-1 registered while it was down: %v", listContainers(t, e))
	}
	if r := cg.Run(t, "/usr/bin/id"); !r.Killed() {
		t.Errorf("/usr/bin/id after the engine adopted the registration: %v, want SIGKILL", r)
	}
	e.CheckJournal(t)
}

func listContainers(t *testing.T, e *harness.Engine) []api.Container {
	t.Helper()
	out, err := e.CLI("containers", "list", "-o", "json")
	if err != nil {
		t.Fatalf("containers list: %v\n%s", err, out)
	}
	var cs []api.Container
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatalf("containers list json: %v\n%s", err, out)
	}
	return cs
}
