package engine_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// An exec allow list from policies, through the engine: only the listed
// directory runs, also after the engine is killed and a new one adopts the
// pins (and with them the path hash key) and registers more containers.
func TestAllowListThroughEngine(t *testing.T) {
	allowed, unlisted := deniedBinary(t), deniedBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{
		"lockdown.yaml": harness.Policy("lockdown", "namespaces: [shop]", "exec: {allow: ["+filepath.Dir(allowed)+"/]}"),
		// Selects the same container without an allow list: the
		// container stays allow-listed.
		"extra.yaml": harness.Policy("extra", "containers: [main]", "exec: {deny: [/nonexistent/holdfast-test]}"),
	}})
	check := func(t *testing.T, cg harness.Cgroup) {
		t.Helper()
		if r := cg.Run(t, allowed); r.ExitCode != 0 || !strings.Contains(r.Stdout, "uid=") {
			t.Errorf("%s is on the allow list: want it to run, got %v", allowed, r)
		}
		if r := cg.Run(t, unlisted); !r.Killed() {
			t.Errorf("%s is not on the allow list: want SIGKILL, got %v", unlisted, r)
		}
	}
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	got, _ := e.Client().List(context.Background())
	if len(got) != 1 || strings.Join(got[0].Policies, ",") != "extra,lockdown" {
		t.Fatalf("want both policies selected, got %+v", got)
	}
	check(t, cg)
	kill := e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "exec-killed" })
	if kill["binary"] != unlisted || kill["cgroupId"] != float64(cg.ID) {
		t.Errorf("exec event: %v", kill)
	}

	e.Kill9(t)
	check(t, cg)
	startAdopting(t, e)
	check(t, cg)
	cg2 := harness.NewCgroup(t)
	register(t, e, "ctr-2", cg2)
	check(t, cg2)
}
