package engine_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// asEvent decodes one line of the events file.
func asEvent(t *testing.T, m map[string]any) api.Event {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var ev api.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("event %s: %v", b, err)
	}
	return ev
}

// waitEvent waits for an event of action whose process runs binary.
func waitEvent(t *testing.T, e *harness.Engine, action, binary string) api.Event {
	t.Helper()
	return asEvent(t, e.WaitEvent(t, func(m map[string]any) bool {
		ev := asEvent(t, m)
		return ev.Action == action && ev.Process != nil && ev.Process.Binary == binary
	}))
}

// execEventOf finds the process_exec event with this exec ID.
func execEventOf(t *testing.T, e *harness.Engine, execID string) (api.Event, bool) {
	t.Helper()
	for _, m := range e.Events(t) {
		if ev := asEvent(t, m); ev.Action == "process_exec" && ev.Process != nil && ev.Process.ExecID == execID {
			return ev, true
		}
	}
	return api.Event{}, false
}

// checkChain checks a kill event of binary run by sh -> sh: each step
// named, its exec ID that of the process_exec event of that process, each
// parent exec ID the exec ID of the next ancestor.
func checkChain(t *testing.T, e *harness.Engine, kill api.Event, binary string) {
	t.Helper()
	if kill.AncestorsIncomplete || len(kill.Ancestors) != 2 {
		t.Fatalf("kill event: want 2 ancestors, complete; got %+v incomplete=%v", kill.Ancestors, kill.AncestorsIncomplete)
	}
	chain := append([]api.Process{*kill.Process}, kill.Ancestors...)
	for i, p := range chain {
		want := "/bin/sh"
		if i == 0 {
			want = binary
		}
		if p.Binary != want || p.ExecID == "" || p.PID == 0 {
			t.Errorf("step %d: %+v, want binary %s with an exec ID", i, p, want)
		}
		exec, ok := execEventOf(t, e, p.ExecID)
		if !ok || exec.Process.PID != p.PID || exec.Verdict != api.VerdictAllow {
			t.Errorf("step %d (%s, pid %d): no process_exec event with exec ID %s (found %v: %+v)", i, p.Binary, p.PID, p.ExecID, ok, exec.Process)
		}
		if i+1 < len(chain) && p.ParentExecID != chain[i+1].ExecID {
			t.Errorf("step %d: parent exec ID %s, its parent's exec ID is %s", i, p.ParentExecID, chain[i+1].ExecID)
		}
	}
	if got := kill.Process.Args; len(got) != 1 || got[0] != binary {
		t.Errorf("killed process args %q, want [%s]", got, binary)
	}
}

// waitTableEmpty waits until the process table holds no entry: every
// process exited, and the entries events kept past their exit were
// released once described.
func waitTableEmpty(t *testing.T, e *harness.Engine) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u := mapUsage(t, status(t, e), "processes")
		if u.Entries == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process table keeps %d entries after its processes exited", u.Entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func processPolicy(binary string) string {
	return fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: lockdown}
spec:
  selector: {namespaces: [shop]}
  events: {exec: true}
  exec:
    deny: [%s]
`, binary)
}

// sh -> sh -> denied binary: the kill event names each step, with the
// exec IDs of their process_exec events; after the engine is killed with
// SIGKILL and started again, a kill in a chain started before the restart
// still names its ancestors from the pinned process table.
func TestKillEventCarriesAncestry(t *testing.T) {
	binary := deniedBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": processPolicy(binary)},
		Args: []string{"--max-processes", "4096"}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	if u := mapUsage(t, status(t, e), "processes"); u.Capacity != 4096 {
		t.Errorf("process table %+v: want the capacity --max-processes gave", u)
	}
	if out, err := e.CLI("status"); err != nil || !strings.Contains(out, "map processes:") || !strings.Contains(out, "control process:") {
		t.Errorf("holdfast status does not show the process table and its control: %v\n%s", err, out)
	}

	flag := filepath.Join(t.TempDir(), "go")
	// The inner sh runs the binary once flag exists, and both shells stay
	// to be described.
	inner := fmt.Sprintf(`while [ ! -e %s ]; do /usr/bin/sleep 0.05; done; %s; /usr/bin/sleep 60`, flag, binary)
	cg.Start(t, "/bin/sh", "-c", fmt.Sprintf(`/bin/sh -c '%s'; true`, inner))

	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kill := waitEvent(t, e, "exec-killed", binary)
	checkChain(t, e, kill, binary)

	// Started before the restart, killed after it.
	flag2 := filepath.Join(t.TempDir(), "go")
	cg.Start(t, "/bin/sh", "-c", fmt.Sprintf(`/bin/sh -c '%s'; true`, strings.ReplaceAll(inner, flag, flag2)))
	// Its shells exist (process_exec events) before the engine dies.
	e.WaitEvent(t, func(m map[string]any) bool {
		ev := asEvent(t, m)
		return ev.Action == "process_exec" && len(ev.Process.Args) > 2 && strings.Contains(ev.Process.Args[2], flag2) && strings.HasPrefix(ev.Process.Args[2], "while")
	})
	e.Kill9(t)
	e.Start(t)
	if err := os.WriteFile(flag2, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var kills []api.Event
		for _, m := range e.Events(t) {
			if ev := asEvent(t, m); ev.Action == "exec-killed" && ev.Process != nil && ev.Process.Binary == binary {
				kills = append(kills, ev)
			}
		}
		if len(kills) >= 2 {
			checkChain(t, e, kills[1], binary)
			if kills[1].Ancestors[0].ExecID == kill.Ancestors[0].ExecID {
				t.Errorf("the second chain's inner sh has the first one's exec ID %s", kill.Ancestors[0].ExecID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kill event after the restart; events: %v", e.Events(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(cg.Dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	waitTableEmpty(t, e)
}

// An exec rule and a connect rule scoped to an ancestor binary deny a
// descendant of a process running it and allow the same binary and
// destination elsewhere in the container.
func TestAncestryScopedRulesThroughEngine(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	nginx := filepath.Join(filepath.Dir(binary), "nginx")
	dash, err := os.ReadFile("/usr/bin/dash")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nginx, dash, 0o755); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"scoped.yaml": fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: scoped}
spec:
  selector: {namespaces: [shop]}
  exec:
    deny:
      - {path: %[1]s, from: {ancestors: [%[2]s]}}
  network:
    connect:
      deny:
        - {cidr: 127.0.0.1, ports: ["%[3]s"], from: {ancestors: [%[2]s]}}
`, binary, nginx, port)}})
	cg := harness.NewCgroup(t)
	out, err := e.CLI("containers", "add", "--id", "ctr-1", "--cgroup-path", cg.Dir, "--namespace", "shop", "--pod", "web-0", "--container", "main")
	if err != nil {
		t.Fatalf("containers add: %v\n%s", err, out)
	}

	// "$0" keeps the shell from exec'ing the last command in its place.
	script := `"$0"; echo rc=$?`
	if r := cg.Run(t, nginx, "-c", script, binary); !strings.Contains(r.Stdout, "rc=137") {
		t.Errorf("%s below %s: want it killed, got %v", binary, nginx, r)
	}
	if r := cg.Run(t, "/bin/sh", "-c", script, binary); !strings.Contains(r.Stdout, "uid=") || !strings.Contains(r.Stdout, "rc=0") {
		t.Errorf("%s below /bin/sh: want it to run, got %v", binary, r)
	}
	if r := cg.Run(t, binary); r.ExitCode != 0 {
		t.Errorf("%s as the container's first process: want it to run, got %v", binary, r)
	}
	dialBelow := func(shell string) harness.Result {
		cmd := exec.Command(shell, "-c", `"$0"; true`, os.Args[0])
		cmd.Env = append(os.Environ(), envDial+"=tcp "+addr)
		return cg.RunCmd(t, cmd)
	}
	if r := dialBelow(nginx); !strings.Contains(r.Stdout, "operation not permitted") {
		t.Errorf("connect below %s: want EPERM, got %v", nginx, r)
	}
	if r := dialBelow("/bin/sh"); !strings.Contains(r.Stdout, "connected") {
		t.Errorf("connect below /bin/sh: want it allowed, got %v", r)
	}
	// The rules and the classes of running processes are pinned: with no
	// engine at all, a process started below nginx before the engine died
	// is still denied, and new ones are judged the same.
	dir := t.TempDir()
	flag, result := filepath.Join(dir, "go"), filepath.Join(dir, "rc")
	cg.Start(t, nginx, "-c", fmt.Sprintf(`while [ ! -e %s ]; do /usr/bin/sleep 0.05; done; "$0"; echo rc=$? > %s`, flag, result), binary)
	e.Kill9(t)
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cg.Run(t, nginx, "-c", script, binary); !strings.Contains(r.Stdout, "rc=137") {
		t.Errorf("%s below %s with the engine killed: want it killed, got %v", binary, nginx, r)
	}
	if r := cg.Run(t, "/bin/sh", "-c", script, binary); !strings.Contains(r.Stdout, "rc=0") {
		t.Errorf("%s below /bin/sh with the engine killed: want it to run, got %v", binary, r)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, _ := os.ReadFile(result); strings.TrimSpace(string(out)) != "" {
			if strings.TrimSpace(string(out)) != "rc=137" {
				t.Errorf("%s below an %s started before the engine died: %s, want rc=137", binary, nginx, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process started before the engine died did not run its command")
		}
	}
	e.Start(t)

	waitTableEmpty(t, e)
	kill := waitEvent(t, e, "exec-killed", binary)
	if !strings.Contains(kill.Rule, "from ancestors "+nginx) || len(kill.Ancestors) != 1 || kill.AncestorsIncomplete || kill.Ancestors[0].Binary != nginx {
		t.Errorf("kill event: rule %q, ancestors %+v; want the scope and %s as the parent (event %+v, process %+v)", kill.Rule, kill.Ancestors, nginx, kill, kill.Process)
	}
}

// A container registered after its processes started: the table never saw
// its shells, so the kill event names them from /proc, with the exec IDs
// /proc gives, up to the container's first process.
func TestAncestryFromProcBeforeTracking(t *testing.T) {
	binary := deniedBinary(t)
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": processPolicy(binary)}})
	cg := harness.NewCgroup(t)
	flag := filepath.Join(t.TempDir(), "go")
	inner := fmt.Sprintf(`while [ ! -e %s ]; do /usr/bin/sleep 0.05; done; %s; /usr/bin/sleep 60`, flag, binary)
	outer := cg.Start(t, "/bin/sh", "-c", fmt.Sprintf(`/bin/sh -c '%s'; true`, inner))
	register(t, e, "ctr-1", cg)
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kill := waitEvent(t, e, "exec-killed", binary)
	if kill.AncestorsIncomplete || len(kill.Ancestors) != 2 || kill.Ancestors[1].PID != uint32(outer.Process.Pid) {
		t.Fatalf("ancestors %+v incomplete=%v: want the two shells, the outer one pid %d", kill.Ancestors, kill.AncestorsIncomplete, outer.Process.Pid)
	}
	for _, a := range kill.Ancestors {
		// /proc names the file the shell runs (/bin/sh -> dash).
		if a.Binary != "/usr/bin/dash" || a.ExecID == "" || len(a.Args) == 0 || a.Args[0] != "/bin/sh" {
			t.Errorf("ancestor from /proc: %+v", a)
		}
	}
	if kill.Process.ParentExecID != kill.Ancestors[0].ExecID || kill.Ancestors[0].ParentExecID != kill.Ancestors[1].ExecID {
		t.Errorf("exec IDs from BPF and /proc disagree: process parent %s, inner sh %s (parent %s), outer sh %s",
			kill.Process.ParentExecID, kill.Ancestors[0].ExecID, kill.Ancestors[0].ParentExecID, kill.Ancestors[1].ExecID)
	}
}
