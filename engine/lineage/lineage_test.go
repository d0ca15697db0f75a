package lineage

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
)

const boot = "6f1c2a9e-0000-4000-8000-000000000001"

// The table holds task start_boottime in ns; /proc shows it cut to clock
// ticks. Every ns within one tick gives the exec ID /proc gives.
func TestExecIDSameFromBPFAndProc(t *testing.T) {
	const ticks = 123456
	want := ExecID(boot, ticks, 42)
	for _, ns := range []uint64{ticks * bpf.StartTickNs, ticks*bpf.StartTickNs + 1, (ticks+1)*bpf.StartTickNs - 1} {
		if got := ExecID(boot, Ticks(ns), 42); got != want {
			t.Errorf("start %d ns: exec ID %s, /proc's is %s", ns, got, want)
		}
	}
	if ExecID(boot, ticks+1, 42) == want || ExecID(boot, ticks, 43) == want || ExecID("other", ticks, 42) == want {
		t.Error("exec IDs of different processes are equal")
	}
}

// fakeProc writes what ReadProc reads for one process.
func fakeProc(t *testing.T, root string, pid, ppid uint32, ticks uint64, exe string, args ...string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A name with a space and a parenthesis, as a process can choose.
	stat := fmt.Sprintf("%d (a b) c) S %d 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, ppid, ticks)
	var cmdline []byte
	for _, a := range args {
		cmdline = append(append(cmdline, a...), 0)
	}
	for name, data := range map[string]string{"stat": stat, "cmdline": string(cmdline), "status": "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
}

func TestReadProc(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 10, 1, 777, "/usr/bin/sleep", "sleep", "5")
	p, err := ReadProc(root, 10)
	if err != nil {
		t.Fatal(err)
	}
	if p.PPID != 1 || p.StartTicks != 777 || p.Binary != "/usr/bin/sleep" || !slices.Equal(p.Args, []string{"sleep", "5"}) || p.UID != 1000 {
		t.Fatalf("ReadProc = %+v", p)
	}
	// The live process: its start matches the one Go's own /proc read gives.
	self, err := ReadProc("/proc", uint32(os.Getpid()))
	if err != nil || self.PPID != uint32(os.Getppid()) || self.StartTicks == 0 {
		t.Fatalf("ReadProc(self) = %+v, %v", self, err)
	}
}

type fakeTable map[uint32]bpf.Process

func (f fakeTable) Process(pid uint32) (bpf.Process, bool, error) {
	p, ok := f[pid]
	return p, ok, nil
}

func TestDescribeChain(t *testing.T) {
	root := t.TempDir()
	ns := func(ticks uint64) uint64 { return ticks*bpf.StartTickNs + 5 }
	// 100 (outside) -> 200 sh (/proc only: before tracking) -> 300 sh -> 400 curl
	fakeProc(t, root, 100, 1, 10, "/usr/bin/containerd-shim")
	fakeProc(t, root, 200, 100, 20, "/bin/sh", "sh")
	table := fakeTable{
		300: {PID: 300, PPID: 200, StartNs: ns(30), ParentStartNs: ns(20), Binary: "/bin/sh", Args: []string{"sh", "-c", "curl"}},
		400: {PID: 400, PPID: 300, StartNs: ns(40), ParentStartNs: ns(30), Binary: "/usr/bin/curl"},
	}
	inContainer := func(pid uint32, cg uint64) bool { return pid >= 200 && cg == 7 }
	w := &Walker{Table: table, ProcRoot: root, BootID: boot, InContainer: inContainer}

	c := w.Describe(400, ns(40), 7, api.Process{})
	self, anc, incomplete := c.Self, c.Ancestors, c.Incomplete
	if len(c.Tracked) != 2 || c.Tracked[1].PID != 300 {
		t.Errorf("tracked entries %+v, want 400 and 300", c.Tracked)
	}
	if incomplete || self.Binary != "/usr/bin/curl" || self.ExecID != ExecID(boot, 40, 400) || self.ParentExecID != ExecID(boot, 30, 300) {
		t.Fatalf("self %+v incomplete %v", self, incomplete)
	}
	if len(anc) != 2 || anc[0].PID != 300 || anc[1].PID != 200 || anc[1].ExecID != ExecID(boot, 20, 200) || anc[0].ParentExecID != anc[1].ExecID {
		t.Fatalf("ancestors %+v", anc)
	}

	// The /proc parent is gone: the chain is incomplete, not shortened.
	if err := os.RemoveAll(filepath.Join(root, "200")); err != nil {
		t.Fatal(err)
	}
	if c := w.Describe(400, ns(40), 7, api.Process{}); !c.Incomplete || len(c.Ancestors) != 1 {
		t.Fatalf("parent gone: %+v", c)
	}
	// A pid taken by another process (another start) is not the parent.
	fakeProc(t, root, 200, 100, 25, "/bin/other")
	if c := w.Describe(400, ns(40), 7, api.Process{}); !c.Incomplete || len(c.Ancestors) != 1 {
		t.Fatalf("pid reused: %+v", c)
	}
	// The container's first process as the table marks it ends the chain.
	first := table[300]
	first.ContainerRoot = true
	table[300] = first
	if c := w.Describe(400, ns(40), 7, api.Process{}); c.Incomplete || len(c.Ancestors) != 1 {
		t.Fatalf("container root: %+v", c)
	}
	// With capture on, a /proc step carries its environment, cut like the
	// kernel's; the table's steps carry the table's.
	if err := os.RemoveAll(filepath.Join(root, "200")); err != nil {
		t.Fatal(err)
	}
	fakeProc(t, root, 200, 100, 20, "/bin/sh", "sh")
	environ := "A=1\x00B=2\x00" + strings.Repeat("L", 2000) + "\x00"
	if err := os.WriteFile(filepath.Join(root, "200", "environ"), []byte(environ), 0o644); err != nil {
		t.Fatal(err)
	}
	first.ContainerRoot, first.Env = false, []string{"T=table"}
	table[300] = first
	w.CaptureEnv = true
	c = w.Describe(400, ns(40), 7, api.Process{})
	if len(c.Ancestors) != 2 || !slices.Equal(c.Ancestors[0].Env, []string{"T=table"}) {
		t.Fatalf("capture on: ancestors %+v", c.Ancestors)
	}
	if env := c.Ancestors[1].Env; len(env) != 3 || env[0] != "A=1" || len(strings.Join(env, "\x00")) != MaxEnvLen {
		t.Errorf("environment from /proc %q, want A=1, B=2 and the long one cut at %d bytes", env, MaxEnvLen)
	}
	w.CaptureEnv = false
	if c := w.Describe(400, ns(40), 7, api.Process{}); c.Ancestors[1].Env != nil {
		t.Errorf("capture off: /proc environment %q", c.Ancestors[1].Env)
	}
	// Unknown everywhere: the fallback, incomplete.
	c = w.Describe(999, ns(90), 7, api.Process{Binary: "/x"})
	self, anc, incomplete = c.Self, c.Ancestors, c.Incomplete
	if !incomplete || len(anc) != 0 || self.Binary != "/x" || self.ExecID != ExecID(boot, 90, 999) {
		t.Fatalf("unknown: %+v %+v %v", self, anc, incomplete)
	}
}
