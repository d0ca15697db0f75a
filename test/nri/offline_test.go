package nri_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// startOfflinePlugin runs holdfast-nri able to register containers itself,
// into e's state and pins, while e cannot be reached.
func startOfflinePlugin(t *testing.T, c *containerd, e *harness.Engine, failMode string) *plugin {
	t.Helper()
	return startPlugin(t, c, e.Socket, "--fail-mode", failMode,
		"--state-dir", e.StateDir, "--bpf-dir", e.BPFDir, "--holdfast-binary", e.Bin)
}

// TestEnforcedWhileEngineDown stops the engine, then starts containers
// through containerd's CRI: the plugin registers them itself and they are
// enforced from their first instruction. The engine started afterwards
// lists them with their identity, applies a policy added meanwhile, and no
// longer has the one removed meanwhile.
func TestEnforcedWhileEngineDown(t *testing.T) {
	c := sharedContainerd(t)
	ln, later := listen(t), listen(t)
	e := harness.StartEngine(t, harness.Options{Policies: shopPolicy(ln.port)})
	plug := startOfflinePlugin(t, c, e, "closed")
	e.Terminate(t)

	p := c.runPod(t, "shop", "web-5", map[string]string{"app": "web"})
	denied := p.run(t, "main", "/bin/id")
	if st := p.wait(t, denied); st.GetExitCode() != killedExit {
		t.Errorf("engine down: /bin/id as the container's command exited %d (%s), want killed", st.GetExitCode(), st.GetReason())
	}
	if out := p.output(t, "main"); out != "" {
		t.Errorf("engine down: /bin/id wrote %q, want nothing", out)
	}
	app := p.run(t, "app", "/bin/sleep", "999")
	if code, out := p.exec(t, app, "/bin/id"); code != killedExit {
		t.Errorf("engine down: exec /bin/id exited %d (%q), want killed", code, out)
	}
	if _, out := p.exec(t, app, connectCmd(later.port, "before")...); !strings.Contains(out, "rc=0") {
		t.Errorf("engine down, before the policy change: connect output %q, want success", out)
	}
	gone := p.run(t, "gone", "/bin/sleep", "999")
	p.removeContainer(t, gone)
	if n := strings.Count(plug.log(), "registered the container offline"); n < 3 {
		t.Errorf("plugin logged %d offline registrations, want 3:\n%s", n, plug.log())
	}

	e.WritePolicy(t, "shop-later.yaml", fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: shop-later}
spec:
  selector: {namespaces: [shop]}
  network:
    connect:
      deny: [{cidr: 127.0.0.1/32, ports: ["%d"], protocol: tcp}]
`, later.port))
	e.Start(t)
	regs := registrations(t, e.Socket)
	r, ok := regs[app]
	if !ok {
		t.Fatalf("engine does not list %s, registered while it was down; has %v", app, regs)
	}
	if r.Namespace != "shop" || r.Pod != "web-5" || r.Labels["app"] != "web" || r.Name != "app" || r.Image != testImage ||
		r.Source != "nri" || !slices.Equal(r.Policies, []string{"shop-later", "shop-web"}) {
		t.Errorf("engine's record of %s: %+v", app, r)
	}
	if _, ok := regs[gone]; ok {
		t.Errorf("engine lists %s, removed while it was down", gone)
	}
	if code, out := p.exec(t, app, "/bin/id"); code != killedExit {
		t.Errorf("engine back: exec /bin/id exited %d (%q), want killed", code, out)
	}
	if _, out := p.exec(t, app, connectCmd(later.port, "after")...); !strings.Contains(out, "rc=1") || !strings.Contains(out, "not permitted") {
		t.Errorf("engine back, policy added while it was down: connect output %q, want refused", out)
	}
	if got := later.received(); slices.Contains(got, "after") {
		t.Errorf("listener got %q: the connect after the policy change went through", got)
	}
	e.CheckJournal(t)
}

// TestEngineHung stops the engine with SIGSTOP: it holds the state-dir lock
// and never answers, so the plugin can neither register through it nor
// without it; its fail mode decides within NRI's request timeout.
func TestEngineHung(t *testing.T) {
	c := sharedContainerd(t)
	e := harness.StartEngine(t, harness.Options{Policies: shopPolicy(1)})
	resume := e.Hang(t)

	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			plug := startOfflinePlugin(t, c, e, mode)
			p := c.runPod(t, "shop", "web-hung-"+mode, map[string]string{"app": "web"})
			id := p.create(t, "main", "/bin/sleep", "999")
			err := p.start(id)
			if mode == "closed" {
				if err == nil || !strings.Contains(err.Error(), "fail mode is closed") || !strings.Contains(err.Error(), "state-dir lock") {
					t.Errorf("start with the engine hung: %v, want a fail-closed refusal naming the state-dir lock", err)
				}
				return
			}
			if err != nil {
				t.Errorf("start with the engine hung, fail open: %v", err)
			}
			if !strings.Contains(plug.log(), "container starts unenforced") || !strings.Contains(plug.log(), "state-dir lock") {
				t.Errorf("plugin did not log the fail-open start and its reason:\n%s", plug.log())
			}
		})
	}
	resume()
	e.CheckJournal(t)
}
