package harness

import (
	"testing"
	"time"
)

// WaitExecSwitch runs from and to in cg until to is killed and from runs,
// failing t after within. Every round must see one of them killed: the
// container is never without rules while its policies change.
func WaitExecSwitch(t testing.TB, cg Cgroup, from, to string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		before, after := cg.Run(t, from), cg.Run(t, to)
		if !before.Killed() && !after.Killed() {
			t.Fatalf("neither %s (%v) nor %s (%v) killed while the policies changed: a gap", from, before, to, after)
		}
		if after.Killed() && before.ExitCode == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy change not in force within %v: %s %v, %s %v", within, from, before, to, after)
		}
	}
}
