package engine_test

import (
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// A registered container's rules follow its processes into sub-cgroups made
// after registration, also across an engine restart; a cgroup deeper than
// the programs' ancestor walk is refused at registration with the reason.
func TestSubCgroupsOfRegisteredContainer(t *testing.T) {
	binary := deniedBinary(t)
	listener := harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, listener)}})
	cg := harness.NewCgroup(t)
	register(t, e, "sub-1", cg)

	nested := cg.Sub(t, "init.scope/child")
	expectEnforced(t, nested, binary, listener)
	e.Kill9(t)
	expectEnforced(t, cg.Sub(t, "made-while-the-engine-was-down"), binary, listener)
	e.Start(t)
	expectEnforced(t, nested, binary, listener)

	deep := cg
	for i := 0; i < 40; i++ {
		deep = deep.Sub(t, "d")
	}
	out, err := e.CLI("containers", "add", "--id", "too-deep", "--cgroup-path", deep.Dir, "--namespace", "shop")
	if err == nil || !strings.Contains(out, "registered cgroups must be above level") {
		t.Errorf("registering a cgroup 41 levels deep: want a refusal naming the level limit, got %v:\n%s", err, out)
	}
	expectEnforced(t, deep, binary, listener)
}
