package engine_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/pinned"
)

// withMode sets spec.mode of a policy made by lockdown.
func withMode(policy, mode string) string {
	return strings.Replace(policy, "spec:\n", "spec:\n  mode: "+mode+"\n", 1)
}

// cgroupEntry is the kernel's entry of a registered cgroup.
func cgroupEntry(t *testing.T, e *harness.Engine, cg harness.Cgroup) string {
	t.Helper()
	v, ok := pinned.CgroupEntry(t, e.BPFDir, cg.ID)
	if !ok {
		t.Fatalf("cgroup %d has no entry in the pinned cgroup map", cg.ID)
	}
	return string(v)
}

func reload(t *testing.T, e *harness.Engine) {
	t.Helper()
	if out, err := e.CLI("policy", "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
}

// decision waits for the event of one action on a binary or destination
// after the events already seen (skip), and checks its verdict, mode,
// policy and rule.
func decision(t *testing.T, e *harness.Engine, skip int, action, subject, verdict, mode, policy, rule string) {
	t.Helper()
	ev, _ := e.WaitEventAfter(t, skip, func(ev map[string]any) bool {
		return ev["action"] == action && (ev["binary"] == subject || ev["destination"] == subject)
	})
	if ev["verdict"] != verdict || ev["mode"] != mode || ev["policy"] != policy || ev["rule"] != rule {
		t.Errorf("%s %s event: %v; want verdict %s, mode %s, policy %s, rule %s", action, subject, ev, verdict, mode, policy, rule)
	}
}

// An audit-mode policy lets a denied exec and connect through and records
// wouldDeny; reloads switch the running cgroup to enforcing and back, in
// place: its registration and its kernel entry stay as they were.
func TestAuditModeThroughEngine(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	policy := lockdown("lockdown", binary, addr)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": withMode(policy, "audit")},
		Args: []string{"--event-summary-interval", "200ms"}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	entry := cgroupEntry(t, e, cg)
	// Summaries count audited decisions apart from denials.
	summarized := func(t *testing.T, verdict string) {
		t.Helper()
		ev := e.WaitEvent(t, func(ev map[string]any) bool {
			return ev["summary"] == "exec-killed" && ev["verdict"] == verdict && ev["cgroupId"] == float64(cg.ID)
		})
		if ev["policy"] != "lockdown" || ev["rule"] != binary || ev["count"].(float64) < 1 {
			t.Errorf("%s summary %v", verdict, ev)
		}
	}
	registered, err := e.Client().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	connectRule := "127.0.0.1/32 tcp " + port

	auditPhase := func(t *testing.T) {
		skip := len(e.Events(t))
		expectFree(t, cg, binary, addr)
		decision(t, e, skip, "exec-killed", binary, "wouldDeny", "audit", "lockdown", binary)
		decision(t, e, skip, "connect-refused", addr, "wouldDeny", "audit", "lockdown", connectRule)
	}
	t.Run("audit", auditPhase)
	summarized(t, "wouldDeny")

	st, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Policies) != 1 || st.Policies[0].Mode != "audit" {
		t.Errorf("status policies %+v: want lockdown in audit mode", st.Policies)
	}
	if st.Counters.Audited < 2 {
		t.Errorf("status counters %+v: want the audited exec and connect counted", st.Counters)
	}
	out, err := e.CLI("containers", "explain", "--id", "ctr-1")
	if err != nil || !strings.Contains(out, "lockdown (audit)") {
		t.Errorf("explain does not show the mode: %v\n%s", err, out)
	}
	validated, err := exec.Command(e.Bin, "policy", "validate", filepath.Join(e.PolicyDir, "lockdown.yaml")).CombinedOutput()
	if err != nil || !strings.Contains(string(validated), "ok (lockdown (audit))") {
		t.Errorf("policy validate does not show the mode: %v\n%s", err, validated)
	}

	e.WritePolicy(t, "lockdown.yaml", withMode(policy, "enforce"))
	reload(t, e)
	t.Run("enforce", func(t *testing.T) {
		skip := len(e.Events(t))
		expectEnforced(t, cg, binary, addr)
		decision(t, e, skip, "exec-killed", binary, "deny", "enforce", "lockdown", binary)
		decision(t, e, skip, "connect-refused", addr, "deny", "enforce", "lockdown", connectRule)
		summarized(t, "deny")
	})
	if got := cgroupEntry(t, e, cg); got != entry {
		t.Errorf("cgroup entry changed by the switch to enforce: %v, was %v", got, entry)
	}

	e.WritePolicy(t, "lockdown.yaml", withMode(policy, "audit"))
	reload(t, e)
	t.Run("audit again", auditPhase)
	if got := cgroupEntry(t, e, cg); got != entry {
		t.Errorf("cgroup entry changed by the switch back to audit: %v, was %v", got, entry)
	}
	after, err := e.Client().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || len(registered) != 1 || after[0].CgroupID != registered[0].CgroupID ||
		strings.Join(after[0].Policies, ",") != strings.Join(registered[0].Policies, ",") {
		t.Errorf("registration changed: %+v, was %+v", after, registered)
	}
	st, err = e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Rulesets != 1 {
		t.Errorf("mode switches made new rulesets: status says %d", st.Rulesets)
	}

	// A restarted engine adopts the pins with the modes in them, and
	// applies a mode changed while it was down.
	e.Kill9(t)
	e.Start(t)
	t.Run("audit after restart", auditPhase)
	e.Kill9(t)
	e.WritePolicy(t, "lockdown.yaml", withMode(policy, "enforce"))
	e.Start(t)
	t.Run("enforce after a change while down", func(t *testing.T) { expectEnforced(t, cg, binary, addr) })
	if got := cgroupEntry(t, e, cg); got != entry {
		t.Errorf("cgroup entry changed by the restart: %v, was %v", got, entry)
	}
}

// One container selected by an auditing and an enforcing policy that deny
// the same binary and destination: the enforcing rule decides and its
// policy is named; what only the auditing policy denies is let through.
func TestEnforcingPolicyWinsOverAudit(t *testing.T) {
	binary, auditOnly, addr := deniedBinary(t), deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	// "audit" sorts before "lockdown": its rules have the lower IDs.
	audit := withMode(lockdown("audit", binary, addr), "audit")
	audit = strings.Replace(audit, "deny: ["+binary+"]", "deny: ["+binary+", "+auditOnly+"]", 1)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{
		"audit.yaml":    audit,
		"lockdown.yaml": lockdown("lockdown", binary, addr),
	}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	_, port, _ := strings.Cut(addr, ":")

	expectEnforced(t, cg, binary, addr)
	decision(t, e, 0, "exec-killed", binary, "deny", "enforce", "lockdown", binary)
	decision(t, e, 0, "connect-refused", addr, "deny", "enforce", "lockdown", "127.0.0.1/32 tcp "+port)
	if r := cg.Run(t, auditOnly); r.ExitCode != 0 {
		t.Errorf("%s denied only by the audit policy: want it to run, got %v", auditOnly, r)
	}
	decision(t, e, 0, "exec-killed", auditOnly, "wouldDeny", "audit", "audit", auditOnly)

	out, err := e.CLI("containers", "explain", "--id", "ctr-1", "-o", "json")
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	var ex struct {
		PolicyModes map[string]string `json:"policyModes"`
	}
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatal(err)
	}
	if ex.PolicyModes["audit"] != "audit" || ex.PolicyModes["lockdown"] != "enforce" {
		t.Errorf("explain policy modes %v", ex.PolicyModes)
	}
}

// The policy directory watcher applies a change of spec.mode alone (no
// `policy reload`): the running cgroup switches to enforcing.
func TestWatcherAppliesModeSwitch(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	policy := lockdown("lockdown", binary, addr)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": withMode(policy, "audit")}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	expectFree(t, cg, binary, addr)

	e.WritePolicy(t, "lockdown.yaml", withMode(policy, "enforce"))
	deadline := time.Now().Add(5 * time.Second)
	for r := cg.Run(t, binary); !r.Killed(); r = cg.Run(t, binary) {
		if time.Now().After(deadline) {
			t.Fatalf("mode switch not applied by the watcher within 5s: %s still runs (%v)", binary, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectEnforced(t, cg, binary, addr)
}
