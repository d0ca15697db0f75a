package engine_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// applyDeadline is how soon a changed policy directory must be in force.
const applyDeadline = 2 * time.Second

func expectReady(t *testing.T, e *harness.Engine) {
	t.Helper()
	if out, err := e.CLI("status", "--ready"); err != nil || strings.TrimSpace(out) != "ready" {
		t.Errorf("status --ready: want exit 0 and \"ready\", got %v: %s", err, out)
	}
}

func policyEvents(e *harness.Engine, t *testing.T, action string) []map[string]any {
	var out []map[string]any
	for _, ev := range e.Events(t) {
		if ev["action"] == action {
			out = append(out, ev)
		}
	}
	return out
}

// A ConfigMap volume update (new ..<ts> dir, ..data symlink renamed over)
// is applied to a registered container within 2 s with no gap; a broken
// update changes nothing and is reported per file in status, in the events
// stream and in the log; a restart with the broken directory enforces the
// last good set.
func TestConfigMapUpdateFollowed(t *testing.T) {
	first, second, addr := deniedBinary(t), deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Prepare: func(e *harness.Engine) {
		if err := harness.WriteConfigMap(e.PolicyDir, map[string]string{"lockdown.yaml": lockdown("lockdown", first, addr)}); err != nil {
			t.Fatal(err)
		}
	}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	if r := cg.Run(t, first); !r.Killed() {
		t.Fatalf("%s: want killed by the ConfigMap's policy, got %v", first, r)
	}
	expectReady(t, e)

	if err := harness.WriteConfigMap(e.PolicyDir, map[string]string{"lockdown.yaml": lockdown("lockdown", second, addr)}); err != nil {
		t.Fatal(err)
	}
	harness.WaitExecSwitch(t, cg, first, second, applyDeadline)
	applied := e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "policy-applied" })
	if applied["dir"] != e.PolicyDir || !strings.Contains(strings.Join(stringsOf(applied["policies"]), ","), "lockdown") {
		t.Errorf("policy-applied event: %v", applied)
	}

	// A broken update: a bad CIDR in one key, a good new key beside it.
	bad := strings.Replace(lockdown("lockdown", first, addr), "127.0.0.1/32", "127.0.0.300/32", 1)
	if err := harness.WriteConfigMap(e.PolicyDir, map[string]string{"lockdown.yaml": bad, "extra.yaml": lockdown("extra", first, addr)}); err != nil {
		t.Fatal(err)
	}
	refused := e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "policy-refused" })
	errs, _ := refused["errors"].([]any)
	if len(errs) != 1 || !strings.HasSuffix(fieldOf(errs[0], "file"), "/lockdown.yaml") || !strings.Contains(strings.Join(stringsOf(errs[0].(map[string]any)["errors"]), " "), "cidr") {
		t.Errorf("policy-refused event: want one error naming lockdown.yaml and the cidr, got %v", refused)
	}
	expectUnchanged := func(when string) {
		t.Helper()
		if r := cg.Run(t, second); !r.Killed() {
			t.Errorf("%s: %s: want still killed by the last good set, got %v", when, second, r)
		}
		if r := cg.Run(t, first); r.ExitCode != 0 {
			t.Errorf("%s: %s: the refused set must not apply, got %v", when, first, r)
		}
	}
	expectUnchanged("after a broken update")
	st, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PolicyErrors) != 1 || !strings.HasSuffix(st.PolicyErrors[0].File, "/lockdown.yaml") || !st.Ready {
		t.Errorf("status: want ready with one refused file lockdown.yaml, got ready=%v %+v", st.Ready, st.PolicyErrors)
	}
	if out, _ := e.CLI("status"); !strings.Contains(out, "policy refused:") || !strings.Contains(out, "lockdown.yaml") {
		t.Errorf("holdfast status does not show the refused file:\n%s", out)
	}
	if log, _ := os.ReadFile(e.LogFile); !strings.Contains(string(log), "policy directory change refused") {
		t.Error("engine log has no line about the refused change")
	}

	// Restarted with the broken directory: the last good set, reported again.
	e.Restart(t)
	expectUnchanged("after a restart with the broken directory")
	expectReady(t, e)
	deadline := time.Now().Add(applyDeadline)
	for len(policyEvents(e, t, "policy-refused")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("restarted engine did not report the broken directory: %v", policyEvents(e, t, "policy-refused"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Fixed: both keys apply.
	if err := harness.WriteConfigMap(e.PolicyDir, map[string]string{"lockdown.yaml": lockdown("lockdown", second, addr), "extra.yaml": lockdown("extra", first, addr)}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(applyDeadline)
	for r := cg.Run(t, first); !r.Killed(); r = cg.Run(t, first) {
		if time.Now().After(deadline) {
			t.Fatalf("fixed ConfigMap not applied within %v: %s %v", applyDeadline, first, r)
		}
	}
	if st, _ := e.Client().Status(context.Background()); st.PolicyError != "" || len(st.Policies) != 2 {
		t.Errorf("status after the fix: want two policies and no error, got %+v %q", st.Policies, st.PolicyError)
	}
}

// A burst of edits to a plain directory is read once it settles, and a
// policy dir that disappears makes the engine not ready until it is back.
func TestPolicyDirWatchReadiness(t *testing.T) {
	first, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	// A debounce far above the time the pieces take to write, so the
	// burst is read once, whole.
	e := harness.StartEngine(t, harness.Options{Args: []string{"--policy-debounce", "1s"}})
	cg := harness.NewCgroup(t)
	out, err := e.CLI("containers", "add", "--id", "ctr-1", "--cgroup-path", cg.Dir, "--namespace", "shop",
		"--label", "app=web", "--label", "tier=front", "--container", "main")
	if err != nil {
		t.Fatalf("containers add: %v\n%s", err, out)
	}
	expectReady(t, e)

	// Written in pieces, as an editor without atomic saves would.
	text := lockdown("lockdown", first, addr)
	f, err := os.Create(e.PolicyDir + "/lockdown.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(text); i += 64 {
		f.WriteString(text[i:min(i+64, len(text))])
	}
	f.Close()
	deadline := time.Now().Add(applyDeadline)
	for r := cg.Run(t, first); !r.Killed(); r = cg.Run(t, first) {
		if time.Now().After(deadline) {
			t.Fatalf("new policy file not applied within %v: %v", applyDeadline, r)
		}
	}
	if applied, refused := policyEvents(e, t, "policy-applied"), policyEvents(e, t, "policy-refused"); len(applied) != 1 || len(refused) != 0 {
		t.Errorf("a burst of writes: want it applied once and never refused half-written, got applied %v, refused %v", applied, refused)
	}

	if err := os.RemoveAll(e.PolicyDir); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(applyDeadline)
	for {
		out, err := e.CLI("status", "--ready")
		if err != nil && strings.Contains(out, "not ready: policy directory not watched") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --ready with the policy dir gone: want exit 1 naming the watch, got %v: %s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := cg.Run(t, first); !r.Killed() {
		t.Errorf("policy dir gone: the enforced set must stay, %s got %v", first, r)
	}
	if err := os.MkdirAll(e.PolicyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for out, err := e.CLI("status", "--ready"); err != nil; out, err = e.CLI("status", "--ready") {
		if time.Now().After(deadline) {
			t.Fatalf("policy dir back: want ready again, got %v: %s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The empty directory is a valid, empty set: the container is free.
	if r := cg.Run(t, first); r.ExitCode != 0 {
		t.Errorf("empty policy dir applied: %s want it to run, got %v", first, r)
	}

	// No engine on the socket: not ready, with the reason.
	e.Terminate(t)
	if out, err := e.CLI("status", "--ready"); err == nil || !strings.Contains(out, "not ready") {
		t.Errorf("status --ready with no engine: want exit 1 and the reason, got %v: %s", err, out)
	}
}

func stringsOf(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

func fieldOf(v any, key string) string {
	m, _ := v.(map[string]any)
	s, _ := m[key].(string)
	return s
}
