package hook

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// TestRunOffline checks when the hook takes the slow path (registering the
// container itself) and what it decides from its result. The slow path is
// a fakeEngine here; the real one runs in test/hook.
func TestRunOffline(t *testing.T) {
	cg, _ := newTestCgroup(t)
	pid := cg.Start(t, "sleep", "600").Process.Pid
	refusing, refusingSock := startFakeEngine(t)
	refusing.failWith = errors.New("policy store is read-only")
	missingSock := filepath.Join(t.TempDir(), "absent.sock")
	silentSock := harness.SilentSocket(t)
	ann := map[string]string{ocihook.CRIONamespace: "shop", ocihook.CRIOPodName: "web", ocihook.CRIOLabels: `{"app":"web"}`}
	b := harness.OCIBundle(t, ann, "")

	tests := []struct {
		name       string
		socket     string
		offlineErr error
		mode       registrar.FailMode
		outcome    string
		offline    bool   // the slow path was taken
		logged     string // in the decision's reason or error
	}{
		{name: "engine absent", socket: missingSock, mode: registrar.FailClosed, outcome: OutcomeRegisteredOffline, offline: true, logged: "connect to engine"},
		{name: "engine silent", socket: silentSock, mode: registrar.FailClosed, outcome: OutcomeRegisteredOffline, offline: true, logged: "no answer from the engine within 300ms"},
		{name: "engine refuses", socket: refusingSock, mode: registrar.FailOpen, outcome: OutcomeFailOpen, logged: "policy store is read-only"},
		{name: "slow path cannot enforce", socket: missingSock, mode: registrar.FailOpen, outcome: OutcomeFailClosed, offline: true,
			offlineErr: fmt.Errorf("%w: map cgroup_rules is full", api.ErrCannotEnforce), logged: "map cgroup_rules is full"},
		{name: "slow path locked out", socket: silentSock, mode: registrar.FailOpen, outcome: OutcomeFailOpen, offline: true,
			offlineErr: errors.New("take the engine's state-dir lock: locked by another process"), logged: "state-dir lock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slow := &fakeEngine{registered: map[string]api.Container{}, failWith: tt.offlineErr}
			h := newHook(ocihook.StageCreateRuntime, tt.socket, hookconfig.Config{Settings: registrar.Settings{FailMode: tt.mode}, Timeout: hookconfig.Duration(time.Second), EngineTimeout: hookconfig.Duration(300 * time.Millisecond)})
			h.Offline = slow
			id := "c-" + strings.ReplaceAll(tt.name, " ", "-")
			start := time.Now()
			d := h.Run(deadline(t, 5*time.Second), strings.NewReader(harness.OCIState(id, "creating", pid, b, nil)))
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("run took %v, past its 1s deadline", took)
			}
			if d.Outcome != tt.outcome {
				t.Fatalf("outcome %s (err %v), want %s", d.Outcome, d.Err, tt.outcome)
			}
			if !strings.Contains(string(d.LogLine()), tt.logged) {
				t.Errorf("decision %s does not mention %q", d.LogLine(), tt.logged)
			}
			tookSlowPath := false
			for _, s := range d.Steps {
				tookSlowPath = tookSlowPath || s.Name == "offline"
			}
			if tookSlowPath != tt.offline {
				t.Errorf("slow path taken: %v, want %v (steps %v)", tookSlowPath, tt.offline, d.Steps)
			}
			if tt.outcome != OutcomeRegisteredOffline {
				return
			}
			got, ok := slow.get(id)
			if !ok || got.CgroupID != cg.ID || got.Pod != "web" || got.Source != ocihook.Source {
				t.Fatalf("slow path got %+v (found %v), want cgroup %d of shop/web", got, ok, cg.ID)
			}

			post := newHook(ocihook.StagePoststop, tt.socket, hookconfig.Config{Timeout: hookconfig.Duration(time.Second), EngineTimeout: hookconfig.Duration(300 * time.Millisecond)})
			post.Offline = slow
			stopped := `{"ociVersion":"1.0.2","id":"` + id + `","status":"stopped"}`
			if d := post.Run(deadline(t, 5*time.Second), strings.NewReader(stopped)); d.Outcome != OutcomeUnregisteredOffline {
				t.Errorf("poststop with the engine down: outcome %s (err %v), want %s", d.Outcome, d.Err, OutcomeUnregisteredOffline)
			}
			if d := post.Run(deadline(t, 5*time.Second), strings.NewReader(stopped)); d.Outcome != OutcomeNotRegistered {
				t.Errorf("second poststop: outcome %s (err %v), want %s", d.Outcome, d.Err, OutcomeNotRegistered)
			}
		})
	}
}
