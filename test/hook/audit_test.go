package hook_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/pinned"
)

// A running runc container under an audit-mode policy runs the denied
// binary with a wouldDeny event; policy reloads switch it to enforcing and
// back while it runs, with its registration and kernel entry untouched.
func TestRuncAuditModeSwitchesInPlace(t *testing.T) {
	r := newRuncEnv(t)
	// lockedPolicy and a connect rule (nothing listens on port 9: a
	// connect let through is refused by the peer, not with EPERM).
	withMode := func(mode string) string {
		p := lockedPolicy + "  network:\n    connect:\n      deny: [{cidr: 127.0.0.1/32, ports: [\"9\"], protocol: tcp}]\n"
		return strings.Replace(p, "spec:\n", "spec:\n  mode: "+mode+"\n", 1)
	}
	const connectEPERM = 13
	connect := []string{"/bin/sh", "-c", "nc 127.0.0.1 9 </dev/null 2>&1 | grep -q 'not permitted' && exit 13; exit 0"}
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"locked.yaml": withMode("audit")}})
	logPath := filepath.Join(t.TempDir(), "hook.log")
	c := r.sleeper(t, e, logPath, "auditor")
	c.runc(t, "create", "--bundle", c.Bundle, c.ID)
	c.runc(t, "start", c.ID)
	cgroupID := cgroupIDOf(t, logPath, c.ID)
	entry, ok := pinned.CgroupEntry(t, e.BPFDir, cgroupID)
	if !ok {
		t.Fatalf("container %s (cgroup %d) is not mapped", c.ID, cgroupID)
	}

	seen := 0
	expectEvent := func(t *testing.T, action, rule, verdict, mode string) {
		t.Helper()
		var ev map[string]any
		ev, seen = e.WaitEventAfter(t, seen, func(ev map[string]any) bool {
			ctr, _ := ev["container"].(map[string]any)
			return ev["action"] == action && ctr["id"] == c.ID
		})
		if ev["verdict"] != verdict || ev["mode"] != mode || ev["policy"] != "locked" || ev["rule"] != rule {
			t.Errorf("event %v: want verdict %s, mode %s, policy locked, rule %s", ev, verdict, mode, rule)
		}
	}
	audited := func(t *testing.T) {
		if code := c.exec(t, "/bin/id"); code != 0 {
			t.Errorf("/bin/id in audit mode: want it to run, got exit %d", code)
		}
		expectEvent(t, "exec-killed", "/bin/id", "wouldDeny", "audit")
		if code := c.exec(t, connect...); code != 0 {
			t.Errorf("connect to 127.0.0.1:9 in audit mode: want it let through, got exit %d", code)
		}
		expectEvent(t, "connect-refused", "127.0.0.1/32 tcp 9", "wouldDeny", "audit")
	}
	reload := func(t *testing.T, mode string) {
		e.WritePolicy(t, "locked.yaml", withMode(mode))
		if out, err := e.CLI("policy", "reload"); err != nil {
			t.Fatalf("reload: %v\n%s", err, out)
		}
	}

	t.Run("audit", audited)
	reload(t, "enforce")
	t.Run("enforce", func(t *testing.T) {
		if code := c.exec(t, "/bin/id"); code != 137 {
			t.Errorf("/bin/id after the reload to enforce: want SIGKILL (137), got exit %d", code)
		}
		expectEvent(t, "exec-killed", "/bin/id", "deny", "enforce")
		if code := c.exec(t, connect...); code != connectEPERM {
			t.Errorf("connect to 127.0.0.1:9 after the reload to enforce: want EPERM, got exit %d", code)
		}
		expectEvent(t, "connect-refused", "127.0.0.1/32 tcp 9", "deny", "enforce")
	})
	reload(t, "audit")
	t.Run("audit again", audited)

	if now, _ := pinned.CgroupEntry(t, e.BPFDir, cgroupID); !bytes.Equal(now, entry) {
		t.Errorf("cgroup entry changed by mode switches: %x, was %x", now, entry)
	}
	if regs := countDecisions(t, logPath, c.ID, "registered"); regs != 1 {
		t.Errorf("container registered %d times, want once", regs)
	}
	c.runc(t, "kill", c.ID, "KILL")
	c.waitStopped(t)
	c.runc(t, "delete", c.ID)
	decision(t, logPath, c.ID, "unregistered")
}

// countDecisions counts the hook log lines of one container and outcome.
func countDecisions(t *testing.T, logPath, id, outcome string) int {
	t.Helper()
	n := 0
	for _, l := range hookLog(t, logPath) {
		if l["id"] == id && l["outcome"] == outcome {
			n++
		}
	}
	return n
}
