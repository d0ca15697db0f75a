package hook_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/hook/hooksd"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// hookEntries are config.json hooks that register at stage and unregister
// at poststop, logging to logPath.
func hookEntries(bin, stage, socket, logPath string, extra ...string) map[string][]runcHook {
	args := func(st string) []string {
		return append([]string{"holdfast-oci-hook", "--stage", st, "--socket", socket, "--log", logPath}, extra...)
	}
	// The environment holdfast install crio gives the hook.
	return map[string][]runcHook{
		stage:      {{Path: bin, Args: args(stage), Env: hooksd.HookEnv, Timeout: 30}},
		"poststop": {{Path: bin, Args: args("poststop"), Env: hooksd.HookEnv, Timeout: 30}},
	}
}

// TestRuncEnforcesFromFirstInstruction runs containers under runc with the
// hook in their config.json, once per stage. A denied binary as the
// container's own command, or exec'd at once by it, dies before printing
// anything; an allowed command runs; an unselected container runs /bin/id.
func TestRuncEnforcesFromFirstInstruction(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})

	stages := []struct {
		name     string
		stage    string
		cgroupNS bool
	}{
		// The hook runs in the container's cgroup and reads /proc/self/cgroup.
		{name: "createContainer", stage: "createContainer"},
		// In a cgroup namespace the hook's /proc/self/cgroup says "/"; the
		// engine reads the hook's cgroup from the host's side.
		{name: "createContainer in cgroupns", stage: "createContainer", cgroupNS: true},
		// The hook runs in runc's namespaces and reads /proc/<pid>/cgroup.
		{name: "createRuntime", stage: "createRuntime"},
	}
	for _, st := range stages {
		t.Run(st.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			hooks := hookEntries(bin, st.stage, e.Socket, logPath, "--fail-mode", "closed")
			newCtr := func(args []string, ann map[string]string) *container {
				return r.bundle(t, bundleOpts{Args: args, Annotations: ann, CgroupNS: st.cgroupNS, Hooks: hooks})
			}

			denied := newCtr([]string{"/bin/id"}, lockedAnnotations("denied"))
			if res := denied.run(t); !res.killed() || res.Stdout != "" {
				t.Errorf("denied /bin/id as the container command: want SIGKILL before any output, got %v", res)
			}
			killedEvent(t, e, denied.ID, "/bin/id")
			reg := decision(t, logPath, denied.ID, "registered")
			if pol, _ := reg["policies"].([]any); len(pol) != 1 || pol[0] != "locked" {
				t.Errorf("registration of %s: policies %v, want [locked]", denied.ID, reg["policies"])
			}
			// The log says where the engine's part of the run went.
			steps, _ := reg["stepsUs"].(map[string]any)
			for _, s := range []string{"engine", "engine.request", "engine.config", "engine.cgroup", "engine.rules", "engine.enforce"} {
				if _, ok := steps[s].(float64); !ok {
					t.Errorf("registration of %s: the hook's log times no %s step: %v", denied.ID, s, steps)
				}
			}
			// The container's own cgroup, whatever the hook could see.
			if p, _ := reg["cgroupPath"].(string); !strings.HasSuffix(p, "/holdfast-hook-e2e-"+denied.ID) {
				t.Errorf("registration of %s: cgroup path %q, want the bundle's cgroupsPath", denied.ID, p)
			}
			expectForgotten(t, e, denied.ID, cgroupIDOf(t, logPath, denied.ID))

			execs := newCtr([]string{"/bin/sh", "-c", "exec /bin/id"}, lockedAnnotations("execs"))
			if res := execs.run(t); !res.killed() || res.Stdout != "" {
				t.Errorf("shell exec'ing /bin/id: want SIGKILL before any output, got %v", res)
			}
			killedEvent(t, e, execs.ID, "/bin/id")

			allowed := newCtr([]string{"/bin/echo", "allowed"}, lockedAnnotations("allowed"))
			if res := allowed.run(t); res.ExitCode != 0 || res.Stdout != "allowed\n" {
				t.Errorf("allowed /bin/echo: got %v", res)
			}

			free := newCtr([]string{"/bin/id"}, map[string]string{"io.kubernetes.pod.namespace": "hooktest", "io.kubernetes.cri-o.Labels": `{"app":"free"}`})
			if res := free.run(t); res.ExitCode != 0 || !strings.Contains(res.Stdout, "uid=0") {
				t.Errorf("/bin/id in a container no policy selects: got %v", res)
			}
			for _, c := range []*container{denied, execs, allowed, free} {
				decision(t, logPath, c.ID, "unregistered")
			}
		})
	}
}

// TestRemovedContainerIsForgotten follows one container through create,
// start, kill and delete: registered while it exists, gone from the engine
// and from the pinned map once runc removed it.
func TestRemovedContainerIsForgotten(t *testing.T) {
	r := newRuncEnv(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	logPath := filepath.Join(t.TempDir(), "hook.log")
	c := r.sleeper(t, e, logPath, "sleeper")

	c.runc(t, "create", "--bundle", c.Bundle, c.ID)
	cgroupID := cgroupIDOf(t, logPath, c.ID)
	if !engineLists(t, e, c.ID) || !cgroupMapped(t, e, cgroupID) {
		t.Fatalf("created container %s (cgroup %d) is not registered and mapped", c.ID, cgroupID)
	}
	c.runc(t, "start", c.ID)
	c.runc(t, "kill", c.ID, "KILL")
	c.waitStopped(t)
	if !engineLists(t, e, c.ID) {
		t.Fatalf("container %s was forgotten before it was removed", c.ID)
	}
	c.runc(t, "delete", c.ID)
	// The engine names what it removed, so the delete's line has the
	// identity although the hook's process never parses it.
	if l := decision(t, logPath, c.ID, "unregistered"); l["namespace"] != "hooktest" || l["pod"] != "sleeper" || l["container"] != "main" {
		t.Errorf("unregistered decision lacks the container's identity: %v", l)
	}
	expectForgotten(t, e, c.ID, cgroupID)
}
