package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// allowHelper implements the helper modes of the allow-list tests. Each
// exec mode replaces the helper with the file it names, so the helper
// process itself lives on (exit 0) or dies by SIGKILL:
//
//	exec-written DIR SRC   write SRC's bytes to a new file in DIR, exec it
//	exec-memfd SRC         SRC's bytes in a memfd, execveat(AT_EMPTY_PATH)
//	exec-memfd-proc SRC    the same through /proc/self/fd/N
//	exec-proc-fd PATH      open PATH, exec /proc/self/fd/N
//	exec-self              re-exec /proc/self/exe in mode "exit"
//	allow-install ROOT CGROUPROOT CGROUPID ALLOW DENY  adopt or load; allow
//	                       ALLOW and deny DENY exactly for the cgroup
func allowHelper(mode string, args []string) int {
	if err := runAllowHelper(mode, args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", mode, err)
		return 1
	}
	return 0
}

func runAllowHelper(mode string, args []string) error {
	want := map[string]int{"exec-written": 2, "exec-memfd": 1, "exec-memfd-proc": 1, "exec-proc-fd": 1, "exec-self": 0, "allow-install": 5}
	if len(args) != want[mode] {
		return fmt.Errorf("want %d arguments, got %q", want[mode], args)
	}
	switch mode {
	case "exec-written":
		data, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		path := filepath.Join(args[0], "written-"+strconv.Itoa(os.Getpid()))
		if err := os.WriteFile(path, data, 0o755); err != nil {
			return err
		}
		return syscall.Exec(path, []string{path}, os.Environ())
	case "exec-memfd", "exec-memfd-proc":
		data, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		fd, err := unix.MemfdCreate("payload", 0)
		if err != nil {
			return fmt.Errorf("memfd_create: %w", err)
		}
		if _, err := unix.Write(fd, data); err != nil {
			return fmt.Errorf("write memfd: %w", err)
		}
		if mode == "exec-memfd-proc" {
			path := "/proc/self/fd/" + strconv.Itoa(fd)
			return syscall.Exec(path, []string{"payload"}, os.Environ())
		}
		return execveat(fd, []string{"payload"})
	case "exec-proc-fd":
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		// Go opens with O_CLOEXEC; exec of /proc/self/fd/N of such an fd
		// still works, the kernel opens the file before closing fds.
		path := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
		return syscall.Exec(path, []string{path}, os.Environ())
	case "exec-self":
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, helperEnv+"=") {
				env = append(env, kv)
			}
		}
		return syscall.Exec("/proc/self/exe", []string{os.Args[0]}, append(env, helperEnv+"=exit"))
	case "allow-install":
		cgroupID, err := strconv.ParseUint(args[2], 10, 64)
		if err != nil {
			return err
		}
		e, err := Open(Layout{Root: args[0]}, Options{CgroupRoot: args[1]})
		if err != nil {
			return err
		}
		defer e.Close()
		allow, err := execRuleFor(args[3], 1)
		if err != nil {
			return err
		}
		allow.Kind = ExecAllowExact
		deny, err := execRuleFor(args[4], 2)
		if err != nil {
			return err
		}
		if err := e.PutRuleset(Ruleset{ID: 5, Exec: []ExecRule{allow, deny}}); err != nil {
			return err
		}
		if err := e.SetCgroup(cgroupID, 5); err != nil {
			return err
		}
		fmt.Println(e.Adopted())
		return nil
	}
	return fmt.Errorf("unknown mode")
}

// execveat runs the file behind fd (execveat with AT_EMPTY_PATH, as
// fexecve does); it returns only on failure.
func execveat(fd int, argv []string) error {
	path, err := unix.BytePtrFromString("")
	if err != nil {
		return err
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(path)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return fmt.Errorf("execveat: %w", errno)
}

func allowRule(t testing.TB, path string, ruleID uint32) ExecRule {
	t.Helper()
	r := mustExecRule(t, path, ruleID)
	r.Kind += ExecAllowExact // ExecExact -> ExecAllowExact, ExecPrefix -> ExecAllowPrefix
	return r
}

// varTmpDir is a directory in /var/tmp, the usual place for a dropped
// binary (a different file system view than the test's TempDir).
func varTmpDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "holdfast-allow-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return resolved(t, dir)
}

func TestExecAllowList(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)

	trueBin := resolved(t, "/usr/bin/true")
	id := resolved(t, "/usr/bin/id")
	self := resolved(t, os.Args[0]) // the helper must itself be allowed
	sh := resolved(t, "/bin/sh")
	loader := "/lib64/ld-linux-x86-64.so.2"
	if _, err := os.Stat(loader); err != nil {
		t.Fatalf("dynamic loader: %v", err)
	}
	if resolved(t, loader) == trueBin || sh == trueBin {
		t.Fatal("loader or shell is the allowed binary; the test would prove nothing")
	}

	base := resolved(t, t.TempDir())
	allowedDir := filepath.Join(base, "allowed")
	copyExecutable(t, trueBin, filepath.Join(allowedDir, "true"))
	copyExecutable(t, trueBin, filepath.Join(allowedDir, "sub", "true"))
	copyExecutable(t, trueBin, filepath.Join(allowedDir, "denied"))
	// Same name prefix as the allowed directory, not below it.
	copyExecutable(t, trueBin, filepath.Join(base, "allowedx", "true"))
	writeFile(t, filepath.Join(allowedDir, "script-sh"), "#!/bin/sh\nexit 0\n", 0o755)
	writeFile(t, filepath.Join(allowedDir, "script-true"), "#!"+trueBin+"\n", 0o755)
	symlink(t, trueBin, filepath.Join(base, "link-to-true"))
	symlink(t, id, filepath.Join(allowedDir, "link-to-id"))

	varTmp := varTmpDir(t)
	copyExecutable(t, trueBin, filepath.Join(varTmp, "true"))
	// A world-writable directory a container process can write into.
	writable := filepath.Join(varTmp, "writable")
	if err := os.Mkdir(writable, 0o777); err != nil {
		t.Fatal(err)
	}

	rs := Ruleset{ID: 3, Exec: []ExecRule{
		allowRule(t, trueBin, 1),
		allowRule(t, self, 2),
		allowRule(t, allowedDir+"/", 3),
		mustExecRule(t, filepath.Join(allowedDir, "denied"), 4),
	}}
	cg := env.cgroup(t, "allow")
	enforce(t, e, cg, rs)
	var rule holdfastCgroupRule
	if err := e.maps.CgroupRules.Lookup(cg.id, &rule); err != nil || rule.Flags != flagExec|flagExecAllow {
		t.Fatalf("cgroup entry %+v, %v: want the exec and allow-list flags", rule, err)
	}

	tests := []struct {
		name   string
		cmd    *exec.Cmd
		killed bool
	}{
		{"allowed exact, dynamically linked (its loader is not listed)", command(cg, trueBin), false},
		{"allowed by prefix", command(cg, filepath.Join(allowedDir, "true")), false},
		{"allowed by prefix, subdirectory", command(cg, filepath.Join(allowedDir, "sub", "true")), false},
		{"symlink to an allowed file", command(cg, filepath.Join(base, "link-to-true")), false},
		{"script whose interpreter is listed", command(cg, filepath.Join(allowedDir, "script-true")), false},
		{"/proc/self/fd/N of an allowed file", helper(cg, "exec-proc-fd", trueBin), false},
		{"/proc/self/exe re-exec of an allowed file", helper(cg, "exec-self"), false},
		{"not listed", command(cg, id), true},
		{"not listed, outside the cgroup", command(nil, id), false},
		{"denied below an allowed prefix: deny wins", command(cg, filepath.Join(allowedDir, "denied")), true},
		{"sibling with the allowed directory's name as prefix", command(cg, filepath.Join(base, "allowedx", "true")), true},
		{"allowed symlink name, unlisted target", command(cg, filepath.Join(allowedDir, "link-to-id")), true},
		{"copy of an allowed binary in /var/tmp", command(cg, filepath.Join(varTmp, "true")), true},
		{"file written at run time", helper(cg, "exec-written", writable, trueBin), true},
		{"memfd via execveat", helper(cg, "exec-memfd", trueBin), true},
		{"memfd via /proc/self/fd/N", helper(cg, "exec-memfd-proc", trueBin), true},
		{"/proc/self/fd/N of a copy", helper(cg, "exec-proc-fd", filepath.Join(varTmp, "true")), true},
		{"dynamic loader run as a program", command(cg, loader, trueBin), true},
		{"script whose interpreter is not listed", command(cg, filepath.Join(allowedDir, "script-sh")), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.cmd.CombinedOutput()
			if tc.killed {
				if !killedBySIGKILL(err) {
					t.Fatalf("%v: want SIGKILL, got err=%v output=%q", tc.cmd.Args, err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: want it to run, got %v: %s", tc.cmd.Args, err, out)
			}
		})
	}

	// A ruleset allowing "/" allows files without a path too.
	everything := Ruleset{ID: 4, Exec: []ExecRule{allowRule(t, "/", 1), mustExecRule(t, id, 2)}}
	cgAll := env.cgroup(t, "allow-all")
	enforce(t, e, cgAll, everything)
	if out, err := helper(cgAll, "exec-memfd", trueBin).CombinedOutput(); err != nil {
		t.Errorf(`memfd under an allow list of "/": %v: %s`, err, out)
	}
	if err := command(cgAll, id).Run(); !killedBySIGKILL(err) {
		t.Errorf(`deny under an allow list of "/": want SIGKILL, got %v`, err)
	}
}

func TestExecNotAllowedEvent(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	cg := env.cgroup(t, "events")
	trueBin := resolved(t, "/usr/bin/true")
	id := resolved(t, "/usr/bin/id")
	enforce(t, e, cg, Ruleset{ID: 8, Exec: []ExecRule{allowRule(t, trueBin, 1)}})
	r := openEvents(t, e)
	cmd := command(cg, id)
	if err := cmd.Run(); !killedBySIGKILL(err) {
		t.Fatalf("want SIGKILL, got %v", err)
	}
	ev := readEvent(t, r)
	if ev.Action != ActionExecKilled || !ev.NotAllowed || ev.Unresolved || ev.RuleID != 0 || ev.Ruleset != 8 ||
		ev.Filename != id || ev.TGID != uint32(cmd.Process.Pid) {
		t.Errorf("event %+v: want a not-allowed kill of %s with no rule", ev, id)
	}
}

// The key of the path hashes is made once, kept in a pinned map only root
// can read, and read back by any process that adopts the pins: rules put by
// another process match what the programs compute with the first one's key.
func TestHashKeyAdoptedBySecondProcess(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	if e.Adopted() {
		t.Fatal("first Open adopted pins")
	}
	key := e.hashKey
	if key == (HashKey{}) {
		t.Fatal("no hash key made")
	}
	pin := env.layout.Pin(KindMap, holdfastMapExecHashKey)
	info, err := os.Stat(pin)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("key pin %s has mode %v: want it readable by its owner only", pin, perm)
	}
	// Frozen: user space cannot change the key under the rules.
	if err := e.maps.ExecHashKey.Update(uint32(0), holdfastHashKey{K0: 1, K1: 2}, ebpf.UpdateAny); err == nil {
		t.Error("the key map accepted a write after install")
	}

	trueBin := resolved(t, "/usr/bin/true")
	id := resolved(t, "/usr/bin/id")
	cg := env.cgroup(t, "adopt")
	out, err := helper(nil, "allow-install", env.layout.Root, env.cgroupRoot, strconv.FormatUint(cg.id, 10), trueBin, id).Output()
	if err != nil {
		t.Fatalf("second process: %v: %s", err, exitStderr(err))
	}
	if strings.TrimSpace(string(out)) != "true" {
		t.Fatalf("second process did not adopt the pins: %q", out)
	}
	if err := command(cg, trueBin).Run(); err != nil {
		t.Errorf("allowed by the second process's rule: %v", err)
	}
	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Errorf("denied by the second process's rule: want SIGKILL, got %v", err)
	}
	varTmp := varTmpDir(t)
	copyExecutable(t, trueBin, filepath.Join(varTmp, "true"))
	if err := command(cg, filepath.Join(varTmp, "true")).Run(); !killedBySIGKILL(err) {
		t.Errorf("not on the second process's allow list: want SIGKILL, got %v", err)
	}

	e.Close()
	again := env.open(t)
	if !again.Adopted() || again.hashKey != key {
		t.Errorf("reopened: adopted %t, key changed %t", again.Adopted(), again.hashKey != key)
	}
	t.Run("another install", func(t *testing.T) {
		if newTestEnv(t).open(t).hashKey == key {
			t.Error("two installs share a hash key")
		}
	})
}

// A key map removed by hand cannot be recovered: the repair makes a new
// key and drops the exec rules hashed with the old one, so their rulesets
// read as absent and the engine puts them again, instead of enforcing
// hashes nothing computes.
func TestLostHashKeyDropsExecRules(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	id := resolved(t, "/usr/bin/id")
	if err := e.PutRuleset(Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, id, 1)}}); err != nil {
		t.Fatal(err)
	}
	if err := e.PutRuleset(Ruleset{ID: 2, Connect: []NetRule{{Prefix: mustPrefix(t, "192.0.2.0/24"), PortHi: 65535, RuleID: 1}}}); err != nil {
		t.Fatal(err)
	}
	old := e.hashKey
	e.Close()
	if err := os.Remove(env.layout.Pin(KindMap, holdfastMapExecHashKey)); err != nil {
		t.Fatal(err)
	}
	e = env.open(t)
	if e.Adopted() || e.hashKey == old || e.hashKey == (HashKey{}) {
		t.Fatalf("repair: adopted %t, new key %t", e.Adopted(), e.hashKey != old)
	}
	got, err := e.Rulesets()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[1]; ok || !got[2] {
		t.Errorf("Rulesets() = %v: want the exec ruleset gone and the connect one kept", got)
	}
	if err := e.PutRuleset(Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, id, 1)}}); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "repaired")
	if err := e.SetCgroup(cg.id, 1); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Errorf("rule put again under the new key: want SIGKILL, got %v", err)
	}
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}
