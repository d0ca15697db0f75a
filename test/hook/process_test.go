package hook_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// ancestryPolicy kills /usr/bin/id and reports every process of
// containers labelled app=locked.
var ancestryPolicy = appPolicy("ancestry", "locked", `events: {exec: true}
exec:
  deny: [/usr/bin/id]`)

// TestRuncKillEventAncestry: in a runc container registered by the hook,
// sh -> sh -> /usr/bin/id is killed and the event names both shells up to
// the container's first process, with the exec IDs of their process_exec
// events.
func TestRuncKillEventAncestry(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"ancestry.yaml": ancestryPolicy}})
	logPath := filepath.Join(t.TempDir(), "hook.log")
	c := r.bundle(t, bundleOpts{
		Args:        []string{"/bin/sh", "-c", `/bin/sh -c '/usr/bin/id; echo rc=$?'; true`},
		Annotations: lockedAnnotations("ancestry"),
		Hooks:       hookEntries(bin, "createRuntime", e.Socket, logPath, "--fail-mode", "closed"),
	})
	if res := c.run(t); !strings.Contains(res.Stdout, "rc=137") {
		t.Fatalf("/usr/bin/id below two shells: want it killed, got %v", res)
	}
	decode := func(m map[string]any) api.Event {
		var ev api.Event
		b, _ := json.Marshal(m)
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("event %s: %v", b, err)
		}
		return ev
	}
	kill := decode(killedEvent(t, e, c.ID, "/usr/bin/id"))
	if kill.Process == nil || kill.AncestorsIncomplete || len(kill.Ancestors) != 2 {
		t.Fatalf("kill event: process %+v, ancestors %+v, incomplete %v; want two shells, complete", kill.Process, kill.Ancestors, kill.AncestorsIncomplete)
	}
	execIDs := map[string]uint32{}
	for _, m := range e.Events(t) {
		if ev := decode(m); ev.Action == "process_exec" && ev.Process != nil && ev.Container != nil && ev.Container.ID == c.ID {
			execIDs[ev.Process.ExecID] = ev.Process.PID
		}
	}
	chain := append([]api.Process{*kill.Process}, kill.Ancestors...)
	for i, p := range chain {
		want := "/bin/sh"
		if i == 0 {
			want = "/usr/bin/id"
		}
		if p.Binary != want || execIDs[p.ExecID] != p.PID {
			t.Errorf("step %d: %+v, want %s with the exec ID of its process_exec event (have %v)", i, p, want, execIDs)
		}
		if i+1 < len(chain) && p.ParentExecID != chain[i+1].ExecID {
			t.Errorf("step %d: parent exec ID %s, its parent's is %s", i, p.ParentExecID, chain[i+1].ExecID)
		}
	}
}
