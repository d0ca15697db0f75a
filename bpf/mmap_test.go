package bpf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/require"
)

// buildMapfile compiles testdata/mapfile.c, the helper that maps files the
// ways a loader or an attacker does.
func buildMapfile(t testing.TB) string { return buildTestC(t, "mapfile", "-ldl") }

// loaderPath is the host's dynamic loader, resolved.
func loaderPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-x86-64.so.2"} {
		if _, err := os.Stat(p); err == nil {
			return resolved(t, p)
		}
	}
	t.Fatal("no x86-64 dynamic loader on this host")
	return ""
}

// hostLibrary is a shared library of the host to copy and map.
func hostLibrary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"} {
		if _, err := os.Stat(p); err == nil {
			return resolved(t, p)
		}
	}
	t.Fatal("no libm.so.6 on this host")
	return ""
}

// probeCompat says whether this kernel runs ia32 system calls (int 0x80) of
// a 64-bit process.
func probeCompat(mapfile, lib string) error {
	out, err := exec.Command(mapfile, "compat-mmap2", lib).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		return errors.New("ia32 mmap2 from a 64-bit process: " + strings.TrimSpace(string(out)) + " " + errString(err))
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestMmapDenied(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	mapfile := buildMapfile(t)
	ldso := loaderPath(t)
	id := resolved(t, "/usr/bin/id")
	trueBin := resolved(t, "/usr/bin/true")
	base := resolved(t, t.TempDir())
	deniedLib := filepath.Join(base, "denied", "libhf.so")
	allowedLib := filepath.Join(base, "allowed", "libhf.so")
	copyExecutable(t, hostLibrary(t), deniedLib)
	copyExecutable(t, hostLibrary(t), allowedLib)
	compat := probeCompat(mapfile, allowedLib)

	rs := Ruleset{ID: 3, Exec: []ExecRule{mustExecRule(t, id, 11), mustExecRule(t, deniedLib, 12)}}
	cg := env.cgroup(t, "mmap")
	enforce(t, e, cg, rs)
	r := openEvents(t, e)

	tests := []struct {
		name   string
		cg     *testCgroup
		argv   []string
		compat bool
		// killed: SIGKILL, with exactly wantOut printed before it, and one
		// mmap-killed event of rule and file.
		killed bool
		wantOut,
		file string
		rule uint32
	}{
		{name: "loader runs a denied binary", cg: cg, argv: []string{ldso, id}, killed: true, file: "id", rule: 11},
		{name: "loader runs an allowed binary", cg: cg, argv: []string{ldso, trueBin}},
		{name: "dlopen of a denied library", cg: cg, argv: []string{mapfile, "dlopen", deniedLib}, killed: true, file: "libhf.so", rule: 12},
		{name: "dlopen of an allowed library", cg: cg, argv: []string{mapfile, "dlopen", allowedLib}, wantOut: "OK\n"},
		{name: "mmap exec of a denied file", cg: cg, argv: []string{mapfile, "exec", deniedLib}, killed: true, file: "libhf.so", rule: 12},
		{name: "mmap read of a denied file", cg: cg, argv: []string{mapfile, "read", deniedLib}, wantOut: "OK\n"},
		{name: "mprotect exec of a denied file", cg: cg, argv: []string{mapfile, "mprotect", deniedLib}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 12},
		{name: "mprotect exec of an allowed file", cg: cg, argv: []string{mapfile, "mprotect", allowedLib}, wantOut: "mapped\nOK\n"},
		{name: "pkey_mprotect exec of a denied file", cg: cg, argv: []string{mapfile, "pkey_mprotect", deniedLib}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 12},
		{name: "mprotect over an anonymous mapping and a denied file", cg: cg, argv: []string{mapfile, "span", deniedLib}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 12},
		{name: "mprotect over an anonymous mapping and an allowed file", cg: cg, argv: []string{mapfile, "span", allowedLib}, wantOut: "mapped\nOK\n"},
		{name: "READ_IMPLIES_EXEC read mapping of a denied file", cg: cg, argv: []string{mapfile, "read-implies-exec", deniedLib}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 12},
		{name: "ia32 mmap2 of a denied file", cg: cg, argv: []string{mapfile, "compat-mmap2", deniedLib}, compat: true, killed: true, file: "libhf.so", rule: 12},
		{name: "ia32 mmap2 of an allowed file", cg: cg, argv: []string{mapfile, "compat-mmap2", allowedLib}, compat: true, wantOut: "OK\n"},
		{name: "ia32 mprotect of a denied file", cg: cg, argv: []string{mapfile, "compat-mprotect", deniedLib}, compat: true, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 12},
		{name: "outside the cgroup: loader runs a denied binary", argv: []string{ldso, id}},
		{name: "outside the cgroup: dlopen of a denied library", argv: []string{mapfile, "dlopen", deniedLib}, wantOut: "OK\n"},
		{name: "outside the cgroup: mprotect exec of a denied file", argv: []string{mapfile, "mprotect", deniedLib}, wantOut: "mapped\nOK\n"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cg == cg && tc.killed {
				// A container of its own per kill: events are rate-limited
				// per container and rule.
				tc.cg = env.cgroup(t, fmt.Sprintf("mmap-%d", i))
				if err := e.SetCgroup(tc.cg.id, rs.ID); err != nil {
					t.Fatal(err)
				}
			}
			if tc.compat {
				require.Privileged(t, "ia32 system calls", compat)
			}
			out, err := command(tc.cg, tc.argv[0], tc.argv[1:]...).Output()
			switch {
			case tc.killed:
				checkMmapKilled(t, r, tc.argv, out, err, tc.wantOut,
					Event{RuleID: tc.rule, Filename: tc.file, CgroupID: tc.cg.id, Ruleset: rs.ID})
			case tc.argv[0] == ldso && tc.argv[1] == id:
				if err != nil || !strings.Contains(string(out), "uid=") {
					t.Fatalf("%q: err %v, output %q; want id's output", tc.argv, err, out)
				}
			default:
				checkRan(t, tc.argv, out, err, tc.wantOut)
			}
		})
	}
}

// A ruleset without exec rules leaves mappings alone, and a cgroup below a
// registered one inherits its rules for mappings as for exec.
func TestMmapFollowsCgroupRules(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	mapfile := buildMapfile(t)
	lib := filepath.Join(resolved(t, t.TempDir()), "libhf.so")
	copyExecutable(t, hostLibrary(t), lib)
	cg := env.cgroup(t, "mmap")
	sub := env.cgroup(t, "mmap/sub")

	run := func(c *testCgroup) error { return command(c, mapfile, "exec", lib).Run() }
	enforce(t, e, cg, Ruleset{ID: 1, Connect: []NetRule{{Prefix: mustPrefix(t, "192.0.2.0/24"), PortHi: 65535}}})
	if err := run(cg); err != nil {
		t.Fatalf("connect-only ruleset: %v", err)
	}
	enforce(t, e, cg, Ruleset{ID: 2, Exec: []ExecRule{mustExecRule(t, filepath.Dir(lib)+"/", 2)}})
	if err := run(cg); !killedBySIGKILL(err) {
		t.Fatalf("library below a denied directory: want SIGKILL, got %v", err)
	}
	if err := run(sub); !killedBySIGKILL(err) {
		t.Fatalf("sub-cgroup of a registered cgroup: want SIGKILL, got %v", err)
	}
	if err := e.DeleteCgroup(cg.id); err != nil {
		t.Fatal(err)
	}
	if err := run(cg); err != nil {
		t.Fatalf("deleted cgroup: %v", err)
	}
}

func TestMmapLSMMode(t *testing.T) {
	mapfile := buildMapfile(t)
	lib := filepath.Join(resolved(t, t.TempDir()), "libhf.so")
	copyExecutable(t, hostLibrary(t), lib)
	cg, r := lsmDenying(t, "BPF LSM (lsm/mmap_file, lsm/file_mprotect)", ControlMmap, lib)
	for _, mode := range []string{"exec", "mprotect"} {
		out, _ := command(cg, mapfile, mode, lib).Output()
		if !strings.Contains(string(out), "Operation not permitted") {
			t.Errorf("%s in lsm mode: output %q, want EPERM", mode, out)
		}
		if ev := readEvent(t, r); ev.Action != ActionMmapDenied || ev.RuleID != 1 || ev.Filename != "libhf.so" {
			t.Errorf("%s: event %+v, want %s by rule 1", mode, ev, ActionMmapDenied)
		}
	}
	if out, err := command(cg, mapfile, "read", lib).Output(); err != nil || string(out) != "OK\n" {
		t.Errorf("read mapping in lsm mode: %v, %q", err, out)
	}
}

// passesOf counts the cached passes of cgroup cgroupID.
func passesOf(t *testing.T, e *Enforcer, cgroupID uint64) int {
	t.Helper()
	var k holdfastPassKey
	var v holdfastPassValue
	n := 0
	iter := e.maps.MmapPasses.Iterate()
	for iter.Next(&k, &v) {
		if k.Cgroup == cgroupID {
			n++
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// A mapping that passed is remembered, but no rename, move of a mount or
// change of rules after it lets the same file pass where it is denied.
func TestMmapPassCache(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	mapfile := buildMapfile(t)
	base := resolved(t, t.TempDir())
	denied := filepath.Join(base, "denied")
	if err := os.Mkdir(denied, 0o755); err != nil {
		t.Fatal(err)
	}
	cg := env.cgroup(t, "cache")
	put := func(rs Ruleset) {
		t.Helper()
		enforce(t, e, cg, rs)
	}
	put(Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, denied+"/", 1)}})
	// mapLib maps lib executable in a new process of cg. Passes are cached
	// for every process, so a stale one would let the mapping through.
	mapLib := func(lib string) error {
		return command(cg, mapfile, "exec", lib).Run()
	}
	pass := func(t *testing.T, lib string) {
		t.Helper()
		if err := mapLib(lib); err != nil {
			t.Fatalf("%s: want it mapped, got %v", lib, err)
		}
		if passesOf(t, e, cg.id) == 0 {
			t.Fatalf("%s passed but no pass is cached", lib)
		}
	}
	killed := func(t *testing.T, lib, what string) {
		t.Helper()
		if err := mapLib(lib); !killedBySIGKILL(err) {
			t.Fatalf("%s: %s: want SIGKILL, got %v", lib, what, err)
		}
	}

	t.Run("rename of the file", func(t *testing.T) {
		lib := filepath.Join(base, "libfile.so")
		copyExecutable(t, hostLibrary(t), lib)
		pass(t, lib)
		moved := filepath.Join(denied, "libfile.so")
		if err := os.Rename(lib, moved); err != nil {
			t.Fatal(err)
		}
		killed(t, moved, "renamed into a denied directory")
	})
	t.Run("rename of a directory above it", func(t *testing.T) {
		dir := filepath.Join(base, "dir")
		lib := filepath.Join(dir, "sub", "libdir.so")
		copyExecutable(t, hostLibrary(t), lib)
		pass(t, lib)
		if err := os.Rename(dir, filepath.Join(denied, "dir")); err != nil {
			t.Fatal(err)
		}
		killed(t, filepath.Join(denied, "dir", "sub", "libdir.so"), "its directory renamed into a denied one")
	})
	t.Run("move of its mount", func(t *testing.T) {
		mnt := filepath.Join(base, "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "holdfast-test", mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		target := filepath.Join(denied, "mnt")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		mounted := mnt
		t.Cleanup(func() {
			if out, err := exec.Command("umount", mounted).CombinedOutput(); err != nil {
				t.Errorf("unmount %s: %v: %s", mounted, err, out)
			}
		})
		lib := filepath.Join(mnt, "libmnt.so")
		copyExecutable(t, hostLibrary(t), lib)
		pass(t, lib)
		if out, err := exec.Command("mount", "--move", mnt, target).CombinedOutput(); err != nil {
			t.Fatalf("mount --move: %v: %s", err, out)
		}
		mounted = target
		killed(t, filepath.Join(target, "libmnt.so"), "its mount moved into a denied directory")
	})
	t.Run("ruleset ID reused with other rules", func(t *testing.T) {
		lib := filepath.Join(base, "librules.so")
		copyExecutable(t, hostLibrary(t), lib)
		pass(t, lib)
		put(Ruleset{ID: 2, Exec: []ExecRule{mustExecRule(t, denied+"/", 1)}})
		if err := e.DeleteRuleset(1); err != nil {
			t.Fatal(err)
		}
		put(Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, lib, 3)}})
		killed(t, lib, "denied by the new rules of the same ruleset ID")
	})
}
