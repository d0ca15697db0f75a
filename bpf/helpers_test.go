package bpf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/test/require"
)

// The test binary re-executes itself as a helper process (inside a cgroup,
// or as a loader that exits) when this variable names a mode.
const helperEnv = "HOLDFAST_BPF_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runHelper implements the helper modes:
//
//	dial NETWORK LADDR RADDR    connect (LADDR may be "-"), print OK, EPERM or ERR
//	sendto NETWORK LADDR RADDR  one unconnected UDP datagram, same output
//	flood N IPV4:PORT           N TCP connects on one socket, print the EPERM count
//	install ROOT CGROUPROOT CGROUPID PATH  load, deny PATH exactly for the
//	                            cgroup, print the pins as JSON, exit
//	exec-... and allow-install  see allowHelper
//	pivot ROOT ARGV...          run ARGV after pivot_root into ROOT (pivotHelper)
func runHelper(mode string, args []string) int {
	switch mode {
	case "dial", "sendto":
		if len(args) != 3 {
			fmt.Fprintf(os.Stderr, "%s: want NETWORK LADDR RADDR, got %q\n", mode, args)
			return 2
		}
		fmt.Println(netResult(netCall(mode, args[0], args[1], args[2])))
		return 0
	case "flood":
		return floodHelper(args)
	case "exec-written", "exec-memfd", "exec-memfd-proc", "exec-proc-fd", "exec-self", "allow-install":
		return allowHelper(mode, args)
	case "exit":
		return 0
	case "pivot":
		return pivotHelper(args)
	case "install":
		if len(args) != 4 {
			fmt.Fprintf(os.Stderr, "install: want ROOT CGROUPROOT CGROUPID PATH, got %q\n", args)
			return 2
		}
		if err := installHelper(args[0], args[1], args[2], args[3]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	if h, ok := sockHelpers[mode]; ok {
		return h(args)
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

func netCall(mode, network, laddr, raddr string) error {
	if mode == "sendto" {
		pc, err := net.ListenPacket(network, laddr)
		if err != nil {
			return err
		}
		defer pc.Close()
		dst, err := net.ResolveUDPAddr(network, raddr)
		if err != nil {
			return err
		}
		_, err = pc.WriteTo([]byte("holdfast"), dst)
		return err
	}
	var d net.Dialer
	if laddr != "-" {
		var err error
		if strings.HasPrefix(network, "tcp") {
			d.LocalAddr, err = net.ResolveTCPAddr(network, laddr)
		} else {
			d.LocalAddr, err = net.ResolveUDPAddr(network, laddr)
		}
		if err != nil {
			return err
		}
	}
	conn, err := d.Dial(network, raddr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func netResult(err error) string {
	switch {
	case err == nil:
		return "OK"
	case errors.Is(err, syscall.EPERM):
		return "EPERM"
	}
	return "ERR " + err.Error()
}

func installHelper(root, cgroupRoot, cgroupIDArg, path string) error {
	cgroupID, err := strconv.ParseUint(cgroupIDArg, 10, 64)
	if err != nil {
		return err
	}
	e, err := Open(Layout{Root: root}, Options{CgroupRoot: cgroupRoot})
	if err != nil {
		return err
	}
	defer e.Close()
	rule, err := execRuleFor(path, 1)
	if err != nil {
		return err
	}
	if err := e.PutRuleset(Ruleset{ID: 1, Exec: []ExecRule{rule}}); err != nil {
		return err
	}
	if err := e.SetCgroup(cgroupID, 1); err != nil {
		return err
	}
	pins, err := e.Pinned()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(pins)
}

// execRuleFor compiles a rule path the way the policy compiler does.
func execRuleFor(path string, ruleID uint32) (ExecRule, error) {
	components, prefix, err := SplitPath(path)
	if err != nil {
		return ExecRule{}, err
	}
	kind := ExecExact
	if prefix {
		kind = ExecPrefix
	}
	return ExecRule{Kind: kind, Components: components, RuleID: ruleID}, nil
}

func mustExecRule(t testing.TB, path string, ruleID uint32) ExecRule {
	t.Helper()
	r, err := execRuleFor(path, ruleID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testEnv is one test's private bpffs and cgroup subtree.
type testEnv struct {
	layout     Layout
	bpffs      string
	cgroupRoot string // the programs attach here; test cgroups live below
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	require.Root(t)
	mount, err := cgroup.Detect()
	require.Privileged(t, "cgroup v2", err)

	cgroupRoot := filepath.Join(mount.Root, "holdfast-bpf-test-"+strconv.Itoa(os.Getpid())+"-"+safeName(t.Name()))
	if err := os.Mkdir(cgroupRoot, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, cgroupRoot) })

	bpffs := t.TempDir()
	require.Privileged(t, "bpffs", linux.MountBPFFS(bpffs))
	t.Cleanup(func() {
		// Unmounting drops every pin left on this instance.
		if out, err := exec.Command("umount", bpffs).CombinedOutput(); err != nil {
			t.Errorf("unmount bpffs %s: %v: %s", bpffs, err, out)
		}
	})
	return &testEnv{layout: Layout{Root: filepath.Join(bpffs, "holdfast")}, bpffs: bpffs, cgroupRoot: cgroupRoot}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func safeName(name string) string { return unsafeChars.ReplaceAllString(name, "_") }

// removeCgroup removes a test cgroup once the processes the programs killed
// in it, asynchronously (the sharers of a killed caller's file table or
// address space), have left.
func removeCgroup(t testing.TB, dir string) {
	t.Helper()
	var err error
	for range 500 { // bounds a stuck process only
		if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("remove cgroup %s: %v", dir, err)
}

func testLogger(t testing.TB) *slog.Logger {
	if tt, ok := t.(*testing.T); ok {
		return slog.New(slog.NewTextHandler(tt.Output(), nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (env *testEnv) open(t testing.TB) *Enforcer {
	t.Helper()
	e, err := Open(env.layout, Options{CgroupRoot: env.cgroupRoot, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("open enforcer: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// testCgroup is a cgroup below the env's root with an open fd for
// SysProcAttr.CgroupFD.
type testCgroup struct {
	dir string
	id  uint64
	fd  *os.File
}

func (env *testEnv) cgroup(t testing.TB, name string) *testCgroup {
	t.Helper()
	dir := filepath.Join(env.cgroupRoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroup(t, dir) })
	id, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	return &testCgroup{dir: dir, id: id, fd: fd}
}

// command prepares path to start inside cg (nil: in the test's own cgroup).
func command(cg *testCgroup, path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	if cg != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.fd.Fd())}
	}
	return cmd
}

// helper prepares the test binary as a helper process in cg.
func helper(cg *testCgroup, mode string, args ...string) *exec.Cmd {
	cmd := command(cg, os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// resolved is path with symlinks resolved, as the exec program sees it.
func resolved(t testing.TB, path string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// copyExecutable copies src to dst (creating directories) with mode 0755.
func copyExecutable(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// buildTestC compiles testdata/NAME.c with the host's C compiler into the
// test's temp dir. -mno-red-zone: the helpers' ia32 calls push below the
// stack pointer.
func buildTestC(t testing.TB, name string, libs ...string) string {
	t.Helper()
	var cc string
	for _, c := range []string{"cc", "gcc", "clang"} {
		if p, err := exec.LookPath(c); err == nil {
			cc = p
			break
		}
	}
	if cc == "" {
		t.Fatalf("no C compiler (cc, gcc or clang) to build testdata/%s.c", name)
	}
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O2", "-Wall", "-mno-red-zone", "-o", bin, "testdata/" + name + ".c"}, libs...)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v: %s", name, err, out)
	}
	return bin
}

// enforce stores rs and registers cg under it.
func enforce(t testing.TB, e *Enforcer, cg *testCgroup, rs Ruleset) {
	t.Helper()
	if err := e.PutRuleset(rs); err != nil {
		t.Fatalf("put ruleset %d: %v", rs.ID, err)
	}
	if err := e.SetCgroup(cg.id, rs.ID); err != nil {
		t.Fatalf("register cgroup %s under ruleset %d: %v", cg.dir, rs.ID, err)
	}
}

// openEvents opens e's event stream for the rest of the test.
func openEvents(t testing.TB, e *Enforcer) *EventReader {
	t.Helper()
	r, err := e.Events()
	if err != nil {
		t.Fatalf("open events: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// checkMmapKilled checks a mapping probe's run (out, err of argv): killed
// by SIGKILL with exactly wantOut printed before it, and one mmap-killed
// event from r naming want's rule, file, cgroup and ruleset.
func checkMmapKilled(t *testing.T, r *EventReader, argv []string, out []byte, err error, wantOut string, want Event) {
	t.Helper()
	if !killedBySIGKILL(err) {
		t.Fatalf("%q: want SIGKILL, got err=%v output=%q", argv, err, out)
	}
	if string(out) != wantOut {
		t.Fatalf("%q: output before the kill %q, want %q", argv, out, wantOut)
	}
	ev := readEvent(t, r)
	if ev.Action != ActionMmapKilled || ev.RuleID != want.RuleID || ev.Filename != want.Filename ||
		ev.CgroupID != want.CgroupID || ev.Ruleset != want.Ruleset || ev.Unresolved {
		t.Errorf("event %+v, want %s of %s by rule %d", ev, ActionMmapKilled, want.Filename, want.RuleID)
	}
}

// checkRan checks that argv ran to the end (out, err of its run) and
// printed exactly wantOut.
func checkRan(t *testing.T, argv []string, out []byte, err error, wantOut string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%q: want it to run, got %v (output %q)", argv, err, out)
	}
	if string(out) != wantOut {
		t.Fatalf("%q: output %q, want %q", argv, out, wantOut)
	}
}
