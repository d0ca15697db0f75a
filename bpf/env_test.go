package bpf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// startTracked runs sh -c script in a fresh registered cgroup with env and
// returns the cgroup; the processes are killed at cleanup.
func startTracked(t *testing.T, env *testEnv, e *Enforcer, name string, vars []string, script string) *testCgroup {
	t.Helper()
	cg := env.cgroup(t, name)
	enforce(t, e, cg, Ruleset{ID: 1})
	cmd := command(cg, "/bin/sh", "-c", script)
	cmd.Env = vars
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(cg.dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			t.Error(err)
		}
		cmd.Wait()
	})
	return cg
}

// With capture on, an exec'd image's environment is in process_envs and
// Process returns it; a forked child that has not exec'd carries its
// parent's; an environment past 1023 bytes is cut and says so.
func TestEnvCapture(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	if err := e.SetEnvCapture(true); err != nil {
		t.Fatal(err)
	}
	if on, err := e.EnvCapture(); err != nil || !on {
		t.Fatalf("capture switch reads %v, %v after setting it on", on, err)
	}
	sleep := resolved(t, "/usr/bin/sleep")
	vars := []string{"SECRET_TOKEN=hunter2", "OTHER=x"}
	// The subshell ( ... ; :) is a fork of sh that never execs; sleep is
	// exec'd by it with an environment sh built from its own.
	cg := startTracked(t, env, e, "env", vars, "(exec env -i ONLY=me "+sleep+" 31 & wait; :); :")

	leaf := waitProcess(t, e, cgroupPids(t, cg), sleep)
	if !slices.Equal(leaf.Env, []string{"ONLY=me"}) || leaf.EnvCut {
		t.Errorf("sleep's environment %q (cut %v), want [ONLY=me] as env -i gave it", leaf.Env, leaf.EnvCut)
	}
	sub, ok, err := e.Process(leaf.PPID)
	if err != nil || !ok {
		t.Fatalf("sleep's parent %d: ok=%v err=%v", leaf.PPID, ok, err)
	}
	if sub.Execed || sub.Binary != "/bin/sh" {
		t.Fatalf("sleep's parent %+v: want the forked subshell of /bin/sh", sub)
	}
	root, ok, err := e.Process(sub.PPID)
	if err != nil || !ok {
		t.Fatalf("the subshell's parent %d: ok=%v err=%v", sub.PPID, ok, err)
	}
	for _, p := range []Process{sub, root} {
		for _, v := range vars {
			if !slices.Contains(p.Env, v) {
				t.Errorf("process %d (%s, execed %v) environment %q lacks %s", p.PID, p.Binary, p.Execed, p.Env, v)
			}
		}
	}

	long := strings.Repeat("v", 3000)
	cut := startTracked(t, env, e, "envcut", []string{"A=1", "LONG=" + long}, "exec "+sleep+" 32")
	p := waitProcess(t, e, cgroupPids(t, cut), sleep)
	joined := strings.Join(p.Env, "\x00")
	if !p.EnvCut || len(joined) != 1023 || !slices.Contains(p.Env, "A=1") || !strings.Contains(joined, "LONG=vvv") {
		t.Errorf("long environment: cut %v, %d bytes %.20q..., want A=1 and the start of LONG, cut at 1023 bytes", p.EnvCut, len(joined), joined)
	}

	usage, err := e.MapUsage()
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range usage {
		if u.Name == MapProcessEnvs && u.Entries < 4 {
			t.Errorf("%s holds %d entries, want at least the 4 captured", u.Name, u.Entries)
		}
	}
}

// With capture off (the default), nothing is written to process_envs and
// Process has no environment.
func TestEnvCaptureOff(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	if on, err := e.EnvCapture(); err != nil || on {
		t.Fatalf("capture switch reads %v, %v on a new install, want off", on, err)
	}
	sleep := resolved(t, "/usr/bin/sleep")
	cg := startTracked(t, env, e, "noenv", []string{"SECRET_TOKEN=hunter2"}, "exec "+sleep+" 33")
	p := waitProcess(t, e, cgroupPids(t, cg), sleep)
	if p.Env != nil {
		t.Errorf("environment %q with capture off", p.Env)
	}
	var raw holdfastProcessEnv
	if err := e.maps.ProcessEnvs.Lookup(p.PID, &raw); err == nil {
		t.Errorf("process_envs has an entry for pid %d with capture off", p.PID)
	}
}
