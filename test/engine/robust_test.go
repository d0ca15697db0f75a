package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/daemon"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// The test binary doubles as a connect flooder, harness.Flood, given
// "N ADDR:PORT [PORTS]".
const envFlood = "HOLDFAST_E2E_FLOOD"

func status(t testing.TB, e *harness.Engine) api.Status {
	t.Helper()
	out, err := e.CLI("status", "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	return st
}

func mapUsage(t *testing.T, st api.Status, name string) api.MapUsage {
	t.Helper()
	for _, m := range st.Maps {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("status has no map %s: %+v", name, st.Maps)
	return api.MapUsage{}
}

const shopPolicy = `apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: shop}
spec:
  selector: {namespaces: [shop]}
  network:
    connect:
      deny: [{cidr: 192.0.2.0/24}]
`

// runHook runs the real OCI hook on a creating container in namespace ns
// whose init is pid.
func runHook(t *testing.T, e *harness.Engine, id, ns string, pid int, failMode string) harness.Result {
	t.Helper()
	bin := harness.Build(t, "./hook/cmd/holdfast-oci-hook")
	bundle := harness.OCIBundle(t, map[string]string{"io.kubernetes.pod.namespace": ns}, "")
	cmd := exec.Command(bin, "--stage", "createRuntime", "--socket", e.Socket, "--fail-mode", failMode,
		"--log", "-")
	cmd.Stdin = strings.NewReader(harness.OCIState(id, "creating", pid, bundle, nil))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := harness.Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.ExitCode = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run hook: %v", err)
	}
	return r
}

// A full cgroup_rules map refuses registrations with the map and its
// capacity named, and the hook refuses such a container even in fail-open
// mode: filling the map must not be a way to start unenforced.
func TestMapCapacityReached(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"shop.yaml": shopPolicy},
		Args:     []string{"--max-cgroups", "2"},
	})
	for i := range 2 {
		cg := harness.NewCgroup(t)
		if out, err := e.CLI("containers", "add", "--id", fmt.Sprintf("c%d", i), "--cgroup-path", cg.Dir, "--namespace", "shop"); err != nil {
			t.Fatalf("registration %d of 2: %v\n%s", i, err, out)
		}
	}
	cg := harness.NewCgroup(t)
	out, err := e.CLI("containers", "add", "--id", "c-third", "--cgroup-path", cg.Dir, "--namespace", "shop")
	if err == nil || !strings.Contains(out, "cgroup_rules") || !strings.Contains(out, "capacity of 2") || !strings.Contains(out, "cannot enforce") {
		t.Fatalf("third registration in a map of 2: err %v, output %q; want a refusal naming cgroup_rules and its capacity", err, out)
	}
	if u := mapUsage(t, status(t, e), "cgroup_rules"); u.Entries != 2 || u.Capacity != 2 {
		t.Errorf("status cgroup_rules %+v: want 2 of 2", u)
	}
	text, _ := e.CLI("status")
	if !strings.Contains(text, "map cgroup_rules:") || !strings.Contains(text, "2 / 2 entries (100%)") {
		t.Errorf("text status does not show the fill level:\n%s", text)
	}

	pid := cg.Start(t, "sleep", "600").Process.Pid
	r := runHook(t, e, "c-hook", "shop", pid, "open")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "capacity of 2") {
		t.Errorf("hook in fail-open mode with a full map: %v; want exit 1 with the reason", r)
	}
	// Nothing in a map is needed for an unselected container.
	if r := runHook(t, e, "c-other", "other", pid, "open"); r.ExitCode != 0 {
		t.Errorf("hook for an unselected container: %v", r)
	}
	// The engine's own namespace still starts (unenforced: no room).
	if r := runHook(t, e, "c-system", "holdfast-system", pid, "open"); r.ExitCode != 0 {
		t.Errorf("hook in the engine's namespace: %v", r)
	}
}

// A workload looping on a denied connect: the events file stays within its
// cap, the summaries add up to exactly the kernel's count, and the engine
// keeps registering containers meanwhile.
func TestDenialFlood(t *testing.T) {
	const n = 1000000
	const maxBytes, backups = 1024, 2
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)},
		Args: []string{"--events-max-bytes", strconv.Itoa(maxBytes), "--events-max-backups", strconv.Itoa(backups),
			"--event-summary-interval", "200ms"},
	})
	cg := harness.NewCgroup(t)
	register(t, e, "flooder", cg)

	done := make(chan harness.Result, 1)
	go func() {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), envFlood+"="+strconv.Itoa(n)+" "+addr)
		done <- cg.RunCmd(t, cmd)
	}()
	var res harness.Result
	registered := 0
	for flooding := true; flooding; {
		other := harness.NewCgroup(t)
		register(t, e, fmt.Sprintf("during-%d", registered), other)
		registered++
		select {
		case res = <-done:
			flooding = false
		default:
		}
	}
	if res.ExitCode != 0 || strings.TrimSpace(res.Stdout) != strconv.Itoa(n) {
		t.Fatalf("flood: %v; want all %d connects refused", res, n)
	}
	t.Logf("%d registrations succeeded during the flood", registered)

	kernel := status(t, e).Counters.ConnectRefused
	if kernel != n {
		t.Errorf("kernel counted %d refused connects, want %d", kernel, n)
	}
	// Summaries come every 200ms; wait for the one that covers the kernel
	// count. Rotation may have dropped the oldest: each summary carries the
	// running total, so the retained ones must add up without a gap.
	type summary struct{ count, events, total uint64 }
	read := func() []summary {
		var got []summary
		for _, ev := range e.Events(t) {
			if ev["summary"] == "connect-refused" && uint64(ev["cgroupId"].(float64)) == cg.ID {
				got = append(got, summary{uint64(ev["count"].(float64)), uint64(ev["events"].(float64)), uint64(ev["total"].(float64))})
			}
		}
		return got
	}
	// The files rotate while they are read: only two equal reads in a row,
	// the last one complete, are a consistent view.
	var got []summary
	deadline := time.Now().Add(30 * time.Second)
	for {
		prev := got
		got = read()
		if len(got) > 0 && got[len(got)-1].total >= kernel && slices.Equal(prev, got) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(got) == 0 {
		t.Fatal("no summary written")
	}
	first, last := got[0], got[len(got)-1]
	if last.total != kernel {
		t.Errorf("latest summary total %d, the kernel counted %d", last.total, kernel)
	}
	var summed, events uint64
	for _, s := range got {
		summed += s.count
		events += s.events
	}
	if want := last.total - (first.total - first.count); summed != want {
		t.Errorf("retained summaries count %d denials, their totals say %d: a gap", summed, want)
	}
	if events > uint64(len(got))*5 {
		t.Errorf("%d denials were written as events in %d windows; want at most 5 per window", events, len(got))
	}
	t.Logf("%d summaries retained, %d denials written as events", len(got), events)
	if _, err := os.Stat(e.EventsFile + ".1"); err != nil {
		t.Errorf("the events file was never rotated: %v", err)
	}
	// A restarted engine reports only what is new: its first summary
	// counts the 10 connects made after the restart, not the total again.
	e.Restart(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envFlood+"=10 "+addr)
	if r := cg.RunCmd(t, cmd); strings.TrimSpace(r.Stdout) != "10" {
		t.Fatalf("second flood: %v", r)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var after *summary
		for _, ev := range e.Events(t) {
			if ev["summary"] == "connect-refused" && uint64(ev["total"].(float64)) == n+10 {
				after = &summary{count: uint64(ev["count"].(float64))}
			}
		}
		if after != nil {
			if after.count != 10 {
				t.Errorf("first summary after a restart counts %d, want the 10 new denials", after.count)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no summary of the denials after the restart")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Once the container goes, its counters go after their last summary.
	if u := mapUsage(t, status(t, e), "denials"); u.Entries != 1 {
		t.Errorf("denials map holds %d entries during the flood's aftermath, want 1", u.Entries)
	}
	if out, err := e.CLI("containers", "remove", "--id", "flooder"); err != nil {
		t.Fatalf("containers remove: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		u := mapUsage(t, status(t, e), "denials")
		if u.Entries == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("denial counters of a removed container still there: %+v", u)
		}
		time.Sleep(100 * time.Millisecond)
	}

	var size int64
	for _, p := range []string{e.EventsFile, e.EventsFile + ".1", e.EventsFile + ".2", e.EventsFile + ".3"} {
		if fi, err := os.Stat(p); err == nil {
			if p == e.EventsFile+".3" {
				t.Errorf("more than %d backups kept", backups)
			}
			size += fi.Size()
		}
	}
	if size > maxBytes*(backups+1) {
		t.Errorf("events files hold %d bytes, over the cap of %d", size, maxBytes*(backups+1))
	}
}

// A full state dir: registration fails with a clear error, enforcement in
// place stays, the engine restarts on the full disk, and registers again
// once there is room.
func TestFullStateDir(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)},
		Prepare: func(e *harness.Engine) {
			if err := os.MkdirAll(e.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", e.StateDir).CombinedOutput(); err != nil {
				require.Privileged(t, "tmpfs mount", fmt.Errorf("%v: %s", err, out))
			}
			// Lazily: the engine still holds files there until it stops.
			t.Cleanup(func() { exec.Command("umount", "-l", e.StateDir).Run() })
		},
	})
	cg1, cg2 := harness.NewCgroup(t), harness.NewCgroup(t)
	register(t, e, "ctr-1", cg1)

	filler := filepath.Join(e.StateDir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{4096, 64} {
		for {
			if _, err := f.Write(make([]byte, size)); err != nil {
				break
			}
		}
	}
	f.Close()
	// A label larger than a page cannot fit in what is left.
	pad := "pad=" + strings.Repeat("p", 6000)
	addArgs := []string{"containers", "add", "--id", "ctr-2", "--cgroup-path", cg2.Dir, "--namespace", "shop", "--pod", "web-1",
		"--label", "app=web", "--label", "tier=front", "--label", pad, "--container", "main"}
	out, err := e.CLI(addArgs...)
	if err == nil || !strings.Contains(out, "state dir full") || !strings.Contains(out, "no space left on device") {
		t.Fatalf("registration on a full state dir: err %v, output %q; want a clear no-space error", err, out)
	}
	expectEnforced(t, cg1, binary, addr)
	expectFree(t, cg2, binary, addr)

	// A restart on the full disk keeps everything enforced and recorded.
	e.Restart(t)
	expectEnforced(t, cg1, binary, addr)
	if list, _ := e.CLI("containers", "list"); !strings.Contains(list, "ctr-1") {
		t.Errorf("ctr-1 not listed after a restart on a full disk:\n%s", list)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if out, err := e.CLI(addArgs...); err != nil {
		t.Fatalf("registration once there is room: %v\n%s", err, out)
	}
	e.Restart(t)
	expectEnforced(t, cg1, binary, addr)
	expectEnforced(t, cg2, binary, addr)
}

// A second engine on the same state dir, or on the same socket, exits with
// a clear error and leaves the first engine's socket and state alone.
func TestSecondEngine(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"shop.yaml": shopPolicy}})
	cg := harness.NewCgroup(t)
	if out, err := e.CLI("containers", "add", "--id", "c1", "--cgroup-path", cg.Dir, "--namespace", "shop"); err != nil {
		t.Fatalf("containers add: %v\n%s", err, out)
	}
	tmp := t.TempDir()
	otherSock := filepath.Join(tmp, "other.sock")
	for _, tt := range []struct {
		name, stateDir, socket, want string
	}{
		{"same state dir", e.StateDir, otherSock, "another engine uses state dir"},
		{"same socket", filepath.Join(tmp, "state"), e.Socket, "in use by a live engine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, e.Bin, "engine", "--policies", e.PolicyDir, "--state-dir", tt.stateDir,
				"--bpf-dir", filepath.Join(tmp, "bpffs", "holdfast"), "--socket", tt.socket, "--events", filepath.Join(tmp, "events"))
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("second engine: err %v, output %q; want it to exit saying %q", err, out, tt.want)
			}
			if _, err := os.Stat(otherSock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused engine left a socket behind: %v", err)
			}
			if _, err := os.Stat(filepath.Join(tmp, "bpffs")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused engine touched a bpf dir: %v", err)
			}
			st := status(t, e) // the first engine still answers on its socket
			if st.Containers != 1 {
				t.Errorf("first engine has %d containers after the attempt, want 1", st.Containers)
			}
		})
	}
}

// An engine started on an emptied state dir keeps the pinned entries of
// live cgroups enforced and reports them orphaned; a registrar re-owns one
// by registering it; an orphan whose cgroup is removed goes.
func TestEmptiedStateDirKeepsEnforcing(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)},
		Args:     []string{"--event-summary-interval", "200ms"},
	})
	cg1, cg2, cg3 := harness.NewCgroup(t), harness.NewCgroup(t), harness.NewCgroup(t)
	register(t, e, "ctr-1", cg1)
	register(t, e, "ctr-2", cg2)
	register(t, e, "ctr-3", cg3)
	e.Terminate(t)
	if err := os.RemoveAll(e.StateDir); err != nil {
		t.Fatal(err)
	}
	e.Start(t)

	expectEnforced(t, cg1, binary, addr)
	expectEnforced(t, cg2, binary, addr)
	st := status(t, e)
	orphans := map[uint64]bool{}
	for _, o := range st.Orphans {
		orphans[o.CgroupID] = true
	}
	if st.Containers != 0 || len(st.Orphans) != 3 || !orphans[cg1.ID] || !orphans[cg2.ID] || !orphans[cg3.ID] {
		t.Fatalf("status: %d containers, orphans %+v; want none registered and all three cgroups orphaned", st.Containers, st.Orphans)
	}
	// An explicit remove ends an orphan's enforcement.
	if out, err := e.CLI("containers", "remove", "--id", fmt.Sprintf("orphan:%d", cg3.ID)); err != nil {
		t.Fatalf("remove orphan: %v\n%s", err, out)
	}
	expectFree(t, cg3, binary, addr)
	if text, _ := e.CLI("status"); !strings.Contains(text, "orphaned:") {
		t.Errorf("text status does not show the orphans:\n%s", text)
	}

	// A registrar reports ctr-1 again: re-owned, still enforced.
	register(t, e, "ctr-1", cg1)
	expectEnforced(t, cg1, binary, addr)
	// ctr-2's cgroup goes: its entry goes with it.
	if err := os.Remove(cg2.Dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st = status(t, e)
		if len(st.Orphans) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(st.Orphans) != 0 || st.Containers != 1 {
		t.Errorf("after re-owning ctr-1 and removing ctr-2's cgroup: %d containers, orphans %+v; want 1 and none", st.Containers, st.Orphans)
	}
	if u := mapUsage(t, st, "cgroup_rules"); u.Entries != 1 {
		t.Errorf("cgroup_rules holds %d entries, want 1", u.Entries)
	}
	expectEnforced(t, cg1, binary, addr)
}

// An engine that starts while a registrar registers a container offline
// (holding the state-dir lock for a moment) waits for it instead of exiting.
func TestEngineWaitsForOfflineRegistrar(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{})
	e.Terminate(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lock, err := linux.LockFileWait(ctx, filepath.Join(e.StateDir, daemon.LockFile), daemon.OfflineLockHolder)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	time.AfterFunc(500*time.Millisecond, func() {
		lock.Close()
		close(released)
	})
	e.Start(t) // fails the test if the engine exits
	select {
	case <-released:
	default:
		t.Fatal("the engine answered while a registrar held the state-dir lock")
	}
}
