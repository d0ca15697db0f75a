package bpf

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// procStartTicks is field 22 of /proc/PID/stat: the start in clock ticks
// since boot.
func procStartTicks(t *testing.T, pid uint32) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return ticks
}

// waitProcess polls the table until an entry runs binary.
func waitProcess(t *testing.T, e *Enforcer, pids func() []uint32, binary string) Process {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range pids() {
			if p, ok, err := e.Process(pid); err != nil {
				t.Fatal(err)
			} else if ok && p.Binary == binary {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range pids() {
		p, ok, _ := e.Process(pid)
		t.Logf("pid %d: tracked %v: %+v", pid, ok, p)
	}
	t.Fatalf("no tracked process runs %s", binary)
	return Process{}
}

func cgroupPids(t *testing.T, cg *testCgroup) func() []uint32 {
	return func() []uint32 {
		b, err := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		var out []uint32
		for _, f := range strings.Fields(string(b)) {
			n, _ := strconv.ParseUint(f, 10, 32)
			out = append(out, uint32(n))
		}
		return out
	}
}

// A chain sh -> sh -> sleep in a registered cgroup is in the table with
// each step's parent, argv and start; the start in clock ticks is the one
// /proc reports, so exec IDs from either agree.
func TestProcessTableChain(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "procs")
	enforce(t, e, cg, Ruleset{ID: 1})
	sleep := resolved(t, "/usr/bin/sleep")
	cmd := command(cg, "/bin/sh", "-c", "/bin/sh -c '"+sleep+" 29 1; true'; true")
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killAll := func() {
		if err := os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			t.Error(err)
		}
		cmd.Wait()
	}
	defer killAll()

	leaf := waitProcess(t, e, cgroupPids(t, cg), sleep)
	if !slices.Equal(leaf.Args, []string{sleep, "29", "1"}) || !leaf.Execed || leaf.CgroupID != cg.id {
		t.Fatalf("leaf %+v: want args [%s 29 1], execed, cgroup %d", leaf, sleep, cg.id)
	}
	if leaf.Cwd != filepath.Base(cmd.Dir) {
		t.Errorf("cwd %q, want %q", leaf.Cwd, filepath.Base(cmd.Dir))
	}
	inner, ok, err := e.Process(leaf.PPID)
	if err != nil || !ok {
		t.Fatalf("parent %d of the leaf: ok=%v err=%v", leaf.PPID, ok, err)
	}
	outer, ok, err := e.Process(inner.PPID)
	if err != nil || !ok {
		t.Fatalf("grandparent %d: ok=%v err=%v", inner.PPID, ok, err)
	}
	if inner.Binary != "/bin/sh" || outer.Binary != "/bin/sh" || outer.PID != uint32(cmd.Process.Pid) {
		t.Fatalf("chain %+v <- %+v: want /bin/sh twice, the outer one pid %d", outer, inner, cmd.Process.Pid)
	}
	if leaf.ParentStartNs != inner.StartNs || inner.ParentStartNs != outer.StartNs {
		t.Errorf("parent starts do not match: leaf %d/%d, inner %d/%d", leaf.ParentStartNs, inner.StartNs, inner.ParentStartNs, outer.StartNs)
	}
	if !outer.ContainerRoot || inner.ContainerRoot || leaf.ContainerRoot {
		t.Errorf("container roots: outer %v inner %v leaf %v, want only the outer one", outer.ContainerRoot, inner.ContainerRoot, leaf.ContainerRoot)
	}
	for _, p := range []Process{leaf, inner, outer} {
		if got, want := p.StartNs/StartTickNs, procStartTicks(t, p.PID); got != want {
			t.Errorf("pid %d: start %d ns is %d ticks, /proc says %d", p.PID, p.StartNs, got, want)
		}
	}

	killAll()
	// The outer sh is gone: its entry with it (no event named it).
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, ok, err := e.Process(outer.PID)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry of exited pid %d still in the table", outer.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An exec rule scoped to an ancestor binary kills the binary run below a
// process of that binary, and lets the same binary run elsewhere in the
// container; the same for a connect rule.
func TestAncestryScopedRules(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "ancestry")

	base := resolved(t, t.TempDir())
	nginx := filepath.Join(base, "nginx")
	copyExecutable(t, resolved(t, "/bin/sh"), nginx)
	id := resolved(t, "/usr/bin/id")
	ancestor, _, err := SplitPath(nginx)
	if err != nil {
		t.Fatal(err)
	}
	srv := harness.ListenTCP(t, "127.0.0.1:0")
	port := uint16(srv.Port)
	rule := mustExecRule(t, id, 11)
	rule.From = 1
	// A directory prefix, scoped the same way.
	scopedTrue := filepath.Join(base, "scoped", "true")
	copyExecutable(t, resolved(t, "/usr/bin/true"), scopedTrue)
	dirRule := mustExecRule(t, filepath.Dir(scopedTrue)+"/", 13)
	dirRule.From = 1
	rs := Ruleset{ID: 5, Exec: []ExecRule{rule, dirRule}, Ancestors: [][]string{ancestor},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortLo: port, PortHi: port, RuleID: 12, From: 1}}}
	enforce(t, e, cg, rs)

	run := func(shell, script string) string {
		t.Helper()
		cmd := command(cg, shell, "-c", script, os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=dial")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s -c %q: %v: %s", shell, script, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	idScript := id + " >/dev/null; echo rc=$?"
	dialScript := `"$0" tcp4 - 127.0.0.1:` + strconv.Itoa(srv.Port)
	for _, tc := range []struct {
		name, shell, script, want string
	}{
		{"exec below the ancestor", nginx, idScript, "rc=137"},
		{"exec two levels below", nginx, "/bin/sh -c '" + idScript + "'", "rc=137"},
		{"exec outside its subtree", "/bin/sh", idScript, "rc=0"},
		{"prefix below the ancestor", nginx, scopedTrue + "; echo rc=$?", "rc=137"},
		{"prefix outside its subtree", "/bin/sh", scopedTrue + "; echo rc=$?", "rc=0"},
		{"connect below the ancestor", nginx, dialScript + "; true", "EPERM"},
		{"connect outside its subtree", "/bin/sh", dialScript + "; true", "OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// sh reports a killed child ("Killed") before the echo.
			if got := run(tc.shell, tc.script); !strings.HasSuffix(got, tc.want) || (tc.want == "rc=0" && got != tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	// The same binary, started directly in the container, runs.
	if out, err := command(cg, id).CombinedOutput(); err != nil {
		t.Fatalf("%s in the container, no ancestor: %v: %s", id, err, out)
	}
}
