package bpf

// Red team: what a hostile workload inside a registered cgroup does to get
// around the programs. Every TestRedteam* test asserts the secure behaviour;
// each one that fails is an open hole (see the red team report for the
// reproduction and the suggested fix).

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// buildRedteam compiles testdata/redteam.c.
func buildRedteam(t testing.TB) string { return buildTestC(t, "redteam") }

// newRedteam is a red-team test's environment, enforcer and redteam binary.
func newRedteam(t *testing.T) (*testEnv, *Enforcer, string) {
	t.Helper()
	env := newTestEnv(t)
	return env, env.open(t), buildRedteam(t)
}

// deniedDirCgroup registers a cgroup whose ruleset denies dir/ by path and,
// as the engine resolves a prefix rule, by the directory's identity, plus
// exact rules for files (by path and identity), and checks that probe is
// killed there.
func deniedDirCgroup(t *testing.T, env *testEnv, e *Enforcer, name, dir, probe string, files ...string) *testCgroup {
	t.Helper()
	rs := Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, dir+"/", 1)}}
	ids := []FileRule{{File: statID(t, dir), RuleID: 1, Dir: true}}
	for i, f := range files {
		rs.Exec = append(rs.Exec, mustExecRule(t, f, uint32(i+2)))
		ids = append(ids, FileRule{File: statID(t, f), RuleID: uint32(i + 2)})
	}
	cg := env.cgroup(t, name)
	enforce(t, e, cg, rs)
	if err := e.SetCgroupFiles(cg.id, ids); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, probe).Run(); !killedBySIGKILL(err) {
		t.Fatalf("exec %s in the cgroup: %v, want killed by SIGKILL", probe, err)
	}
	return cg
}

// deniedTree is a static busybox copied to bin, a path below the directory
// denied, in a fresh directory base of the test's.
type deniedTree struct {
	busybox, base, denied, bin string
}

// newDeniedTree copies busybox to denied/rel; busybox runs the applet named
// by its argv[0], so rel's last element says what it does.
func newDeniedTree(t *testing.T, rel string) deniedTree {
	t.Helper()
	d := deniedTree{busybox: staticBusybox(t), base: resolved(t, t.TempDir())}
	d.denied = filepath.Join(d.base, "denied")
	d.bin = filepath.Join(d.denied, rel)
	copyExecutable(t, d.busybox, d.bin)
	return d
}

// inUserMountNS prepares the shell command (sh, or busybox sh) to run
// script, with args as $1..., in cg in a user and mount namespace of its
// own, as a workload may make where user namespaces may be created.
func inUserMountNS(t *testing.T, cg *testCgroup, shell []string, script string, args ...string) *exec.Cmd {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		require.Privileged(t, "util-linux unshare", err)
	}
	argv := append([]string{"--user", "--map-root-user", "--mount", "--propagation", "private"}, shell...)
	argv = append(append(argv, "-c", script, "sh"), args...)
	return command(cg, unshare, argv...)
}

// wantKilled runs cmd, an attack, and checks it was killed by SIGKILL; a
// failure of another kind is of the attack's setup and fatal.
func wantKilled(t *testing.T, cmd *exec.Cmd, setup, attack string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil && !killedBySIGKILL(err) {
		t.Fatalf("%s: %v: %s", setup, err, out)
	}
	if !killedBySIGKILL(err) {
		t.Errorf("%s: err=%v, output %q; want killed by SIGKILL", attack, err, out)
	}
}

// nftPath is the host's nft, or a skip.
func nftPath(t *testing.T) string {
	t.Helper()
	nft, err := exec.LookPath("nft")
	if err != nil {
		require.Privileged(t, "nft (package nftables, installed by make deps)", err)
	}
	return nft
}

// staticBusybox is the host's static busybox, resolved, or a skip.
func staticBusybox(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("busybox")
	if err != nil {
		require.Privileged(t, "static busybox (busybox-static, installed by make deps)", err)
	}
	return resolved(t, p)
}

// writeInterpELF writes a minimal x86-64 executable whose PT_INTERP names
// interp. Its own code only exits with status 42; the kernel maps interp
// and starts at interp's entry point instead. interp's PT_TLS header is
// copied into the executable's headers, which a static glibc program reads
// through AT_PHDR to set up its thread-local storage.
func writeInterpELF(t testing.TB, interp, dst string) {
	t.Helper()
	f, err := elf.Open(interp)
	if err != nil {
		t.Fatalf("read %s: %v", interp, err)
	}
	defer f.Close()
	var extra []elf.ProgHeader
	for _, p := range f.Progs {
		if p.Type == elf.PT_TLS {
			extra = append(extra, p.ProgHeader)
		}
	}
	const base = 0x10000000                                              // clear of a non-PIE interpreter's 0x400000
	code := []byte{0xb8, 0x3c, 0, 0, 0, 0xbf, 0x2a, 0, 0, 0, 0x0f, 0x05} // exit(42)
	nph := 2 + len(extra)
	interpOff := 64 + nph*56
	codeOff := interpOff + len(interp) + 1
	total := codeOff + len(code)
	b := make([]byte, total)
	le := binary.LittleEndian
	copy(b, []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(elf.EM_X86_64))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	le.PutUint64(b[24:], uint64(base+codeOff))
	le.PutUint64(b[32:], 64)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], uint16(nph))
	phdrs := append([]elf.ProgHeader{
		{Type: elf.PT_INTERP, Flags: elf.PF_R, Off: uint64(interpOff), Vaddr: uint64(base + interpOff),
			Paddr: uint64(base + interpOff), Filesz: uint64(len(interp) + 1), Memsz: uint64(len(interp) + 1), Align: 1},
		{Type: elf.PT_LOAD, Flags: elf.PF_R | elf.PF_X, Off: 0, Vaddr: base, Paddr: base,
			Filesz: uint64(total), Memsz: uint64(total), Align: 0x1000},
	}, extra...)
	for i, p := range phdrs {
		q := b[64+i*56:]
		le.PutUint32(q[0:], uint32(p.Type))
		le.PutUint32(q[4:], uint32(p.Flags))
		le.PutUint64(q[8:], p.Off)
		le.PutUint64(q[16:], p.Vaddr)
		le.PutUint64(q[24:], p.Paddr)
		le.PutUint64(q[32:], p.Filesz)
		le.PutUint64(q[40:], p.Memsz)
		le.PutUint64(q[48:], p.Align)
	}
	copy(b[interpOff:], interp)
	copy(b[codeOff:], code)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A denied binary named as the ELF interpreter (PT_INTERP) of a new,
// allowed executable: the kernel maps it inside execve (no mmap system
// call) and starts at its entry point, while sched_process_exec and the
// exec rules see only the new executable. Any static binary runs this way
// (busybox here; static Go binaries alike); no capability is needed.
func TestRedteamExecDeniedBinaryAsELFInterpreter(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	busybox := staticBusybox(t)
	fake := filepath.Join(resolved(t, t.TempDir()), "fake")
	writeInterpELF(t, busybox, fake)

	rs := Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, busybox, 1)}}
	cg := env.cgroup(t, "interp")
	enforce(t, e, cg, rs)
	if err := e.SetCgroupFiles(cg.id, []FileRule{{File: statID(t, busybox), RuleID: 1}}); err != nil {
		t.Fatal(err)
	}

	// The rule holds for the binary itself.
	if err := command(cg, busybox, "true").Run(); !killedBySIGKILL(err) {
		t.Fatalf("exec %s in the cgroup: %v, want killed by SIGKILL", busybox, err)
	}
	// Outside the cgroup the fake executable runs busybox: the probe works.
	outside := command(nil, fake, "holdfast-redteam")
	outside.Args[0] = "echo"
	if out, err := outside.Output(); err != nil || strings.TrimSpace(string(out)) != "holdfast-redteam" {
		t.Fatalf("fake executable with PT_INTERP %s outside the cgroup: %v, output %q; want busybox's echo", busybox, err, out)
	}

	cmd := command(cg, fake, "holdfast-redteam")
	cmd.Args[0] = "echo"
	out, err := cmd.Output()
	if !killedBySIGKILL(err) {
		t.Errorf("executable whose ELF interpreter is the denied %s: err=%v, output %q; want killed by SIGKILL before the denied code runs", busybox, err, out)
	}
}

// A directory-prefix rule is matched on the path inside the task's root, so
// chroot(2) into the denied directory (CAP_SYS_CHROOT is a default
// capability of runc, podman and Docker), or a bind mount of it elsewhere
// in a user and mount namespace of the workload's own (no capability
// needed where user namespaces may be created), makes everything below it
// run.
func TestRedteamExecPrefixRuleEscapedByChrootOrBindMount(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	tree := newDeniedTree(t, "true")
	base, denied, bin := tree.base, tree.denied, tree.bin
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}

	// The directory's identity, as the engine resolves a prefix rule in the
	// container's root: what the bind mount cannot change.
	cg := deniedDirCgroup(t, env, e, "chroot", denied, bin)

	t.Run("chroot", func(t *testing.T) {
		cmd := command(cg, "/true")
		cmd.SysProcAttr.Chroot = denied
		if err := cmd.Run(); !killedBySIGKILL(err) {
			t.Errorf("exec /true after chroot %s (below the denied prefix %s/): err=%v, want killed by SIGKILL", denied, denied, err)
		}
	})
	t.Run("bind mount in a user namespace", func(t *testing.T) {
		cmd := inUserMountNS(t, cg, []string{"sh"}, `mount --bind "$1" "$2" && exec "$2/true"`, denied, mnt)
		wantKilled(t, cmd, fmt.Sprintf("bind mount %s on %s in a user namespace", denied, mnt),
			fmt.Sprintf("exec %s/true, a bind mount of the denied %s/", mnt, denied))
	})
}

// network.sockets.deny: [packet] kills the caller of socket() on sys_enter.
// The other ways to the same socket: io_uring's IORING_OP_SOCKET, ia32
// socket/socketcall (which the syscalls/sys_enter_socket tracepoint never
// saw), and a process sharing the fd table (clone CLONE_FILES, another
// thread group) that would keep the socket its killed sharer made. Packet frames bypass
// cgroup_skb/egress too, so the frame reaches the denied address. The
// helper works in a network namespace of its own, as a container does
// (packet sockets need CAP_NET_RAW in it).
func TestRedteamPacketSocketRoutes(t *testing.T) {
	env, e, rt := newRedteam(t)
	const denied = "127.0.0.2"
	rs := Ruleset{ID: 1,
		Sockets: []SocketRule{{Family: familyPacket, Type: SocketAny, Protocol: SocketAny, RuleID: 1}},
		Connect: []NetRule{{Prefix: mustPrefix(t, denied+"/32"), PortHi: 65535, RuleID: 2}},
	}
	if err := e.PutRuleset(rs); err != nil {
		t.Fatal(err)
	}
	probe := func(t *testing.T, cg *testCgroup, route string) (string, error) {
		t.Helper()
		out, err := command(cg, rt, "packet", route, denied).Output()
		return strings.Join(strings.Fields(string(out)), " "), err
	}
	_, compat := probe(t, nil, "ia32-socket")
	for i, route := range []string{"direct", "io-uring", "ia32-socket", "ia32-socketcall", "clone-files"} {
		t.Run(route, func(t *testing.T) {
			if strings.HasPrefix(route, "ia32") {
				require.Privileged(t, "ia32 system calls", compat)
			}
			if out, err := probe(t, nil, route); err != nil || out != "SENT ARRIVED" {
				t.Fatalf("outside the cgroup: %v, output %q; want SENT ARRIVED (the probe is broken)", err, out)
			}
			cg := env.cgroup(t, fmt.Sprintf("packet-%d", i))
			if err := e.SetCgroup(cg.id, rs.ID); err != nil {
				t.Fatal(err)
			}
			out, err := probe(t, cg, route)
			if strings.Contains(out, "ARRIVED") && !strings.Contains(out, "NOT-ARRIVED") {
				t.Errorf("packet socket by %s in a cgroup denying packet sockets and %s: a frame reached %s (err %v, output %q)", route, denied, denied, err, out)
			} else if err != nil && !killedBySIGKILL(err) {
				t.Errorf("packet socket by %s: %v, output %q", route, err, out)
			}
		})
	}
}

// With CAP_NET_ADMIN in its own network namespace (`--cap-add NET_ADMIN`),
// a workload rewrites the destination after the connect hook: it connects
// to an allowed address and a nat rule sends the connection to the denied
// one. The hooks check the address the caller gave, never the one the
// packets carry.
func TestRedteamConnectRewrittenByNAT(t *testing.T) {
	cg, natRun := natRedteam(t, "nat", "dnat")
	run := func(cg *testCgroup, via string) string { return natRun(cg, via) }
	if got := run(nil, "127.0.0.3"); got != "OK 127.0.0.2" {
		t.Fatalf("outside the cgroup, connect to 127.0.0.3 rewritten to 127.0.0.2: %q, want OK 127.0.0.2 (the probe is broken)", got)
	}
	if got := run(cg, "-"); got != "EPERM" {
		t.Fatalf("connect to the denied 127.0.0.2 in the cgroup: %q, want EPERM", got)
	}
	if got := run(cg, "127.0.0.3"); got != "EPERM" && !strings.HasPrefix(got, "ERR") {
		t.Errorf("connect to 127.0.0.3 rewritten by nat to the denied 127.0.0.2: %q; want no connection to 127.0.0.2", got)
	}
}

// natRedteam sets up a test of a nat rule that rewrites a destination
// after the hooks: cg, registered under a ruleset refusing 127.0.0.2, and
// run, which runs redteam MODE NFT 127.0.0.2 ARGS... in a cgroup (nil: the
// test's own) and returns its output, trimmed.
func natRedteam(t *testing.T, name, mode string) (*testCgroup, func(cg *testCgroup, args ...string) string) {
	env, e, rt := newRedteam(t)
	nft := nftPath(t)
	rs := Ruleset{ID: 1, Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.2/32"), PortHi: 65535, RuleID: 1}}}
	cg := env.cgroup(t, name)
	enforce(t, e, cg, rs)
	return cg, func(cg *testCgroup, args ...string) string {
		t.Helper()
		out, err := command(cg, rt, append([]string{mode, nft, "127.0.0.2"}, args...)...).Output()
		if err != nil {
			t.Fatalf("redteam %s %v: %v (output %q)", mode, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

// A process that can write the cgroup.procs of a cgroup above its
// container (a writable cgroupfs in the host cgroup namespace: CAP_SYS_ADMIN
// and podman's default cgroupns=host on cgroup v1 and hybrid hosts) moves
// itself out and runs what its container denies. tp_btf/cgroup_attach_task
// kills it as it moves.
func TestRedteamMoveOutOfContainerCgroup(t *testing.T) {
	m := newMoveOut(t, "move-exec")
	out, err := m.cmd.Output()
	if !killedBySIGKILL(err) {
		t.Errorf("moved from %s to %s, then exec of the denied %s: err=%v, output %q; want killed by SIGKILL", m.from, m.to, m.denied, err, out)
	}
}

// moveOut is redteam MODE prepared in a cgroup (from) whose ruleset denies
// busybox (denied): the mode moves the process to the test's cgroup root
// (to) by its cgroup.procs, then execs busybox.
type moveOut struct {
	cmd              *exec.Cmd
	from, to, denied string
}

func newMoveOut(t *testing.T, mode string) moveOut {
	t.Helper()
	env, e, rt := newRedteam(t)
	busybox := staticBusybox(t)
	cg := env.cgroup(t, "container")
	enforce(t, e, cg, Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, busybox, 1)}})
	return moveOut{
		cmd:    command(cg, rt, mode, filepath.Join(env.cgroupRoot, "cgroup.procs"), busybox, "true"),
		from:   cg.dir,
		to:     env.cgroupRoot,
		denied: busybox,
	}
}

// The routes the red team tried that hold today, kept as regression
// checks: other ways to exec a denied file, and other ways to reach a
// denied address.
func TestRedteamRoutesThatHold(t *testing.T) {
	env, e, rt := newRedteam(t)
	busybox := staticBusybox(t)
	listener := harness.ListenTCP(t, "127.0.0.2:0")
	script := filepath.Join(resolved(t, t.TempDir()), "script")
	if err := os.WriteFile(script, []byte("#!"+busybox+" true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rs := Ruleset{ID: 1,
		Exec:    []ExecRule{mustExecRule(t, busybox, 1)},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.2/32"), PortHi: 65535, RuleID: 2}},
	}
	cg := env.cgroup(t, "hold")
	enforce(t, e, cg, rs)

	t.Run("exec", func(t *testing.T) {
		pid1 := command(cg, busybox, "true")
		pid1.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID // the denied exec is a pid namespace's init
		for _, c := range []struct {
			name string
			cmd  *exec.Cmd
		}{
			{"execveat AT_EMPTY_PATH of an O_RDONLY fd", command(cg, rt, "execfd", "rdonly", busybox, "true")},
			{"fexecve of an O_PATH fd", command(cg, rt, "execfd", "path", busybox, "true")},
			{"script whose #! interpreter is denied", command(cg, script)},
			{"denied exec by the init of a pid namespace", pid1},
		} {
			if out, err := c.cmd.Output(); !killedBySIGKILL(err) {
				t.Errorf("%s: err=%v, output %q; want killed by SIGKILL", c.name, err, out)
			}
		}
	})
	t.Run("network", func(t *testing.T) {
		port := fmt.Sprint(listener.Port)
		for _, kind := range []string{"tfo", "uring-connect", "uring-sendmsg", "sendmmsg", "udp-connect", "pktinfo", "dualstack-tcp", "dualstack-udp"} {
			out, err := command(nil, rt, "net", kind, "127.0.0.2", port).Output()
			if got := strings.TrimSpace(string(out)); err != nil || got == "EPERM" {
				t.Fatalf("%s to 127.0.0.2 outside the cgroup: %v, %q; want it through (the probe is broken)", kind, err, got)
			}
			out, err = command(cg, rt, "net", kind, "127.0.0.2", port).Output()
			if got := strings.TrimSpace(string(out)); err != nil || got != "EPERM" {
				t.Errorf("%s to the denied 127.0.0.2: %v, %q; want EPERM", kind, err, got)
			}
		}
	})
}

// A process sharing the address space (clone CLONE_VM without
// CLONE_THREAD: another thread group) maps a denied library executable.
// SIGKILL reaches only the mapper's thread group; the survivor must not be
// left with the executable mapping.
func TestRedteamMmapSharedAddressSpace(t *testing.T) {
	env, e, rt := newRedteam(t)
	lib := filepath.Join(resolved(t, t.TempDir()), "denied", "libhf.so")
	copyExecutable(t, hostLibrary(t), lib)
	rs := Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, lib, 1)}}
	cg := env.cgroup(t, "vm")
	enforce(t, e, cg, rs)
	if out, err := command(nil, rt, "vm-mmap", lib).Output(); err != nil || strings.TrimSpace(string(out)) != "MAPPED child exited" {
		t.Fatalf("outside the cgroup: %v, %q; want MAPPED child exited (the probe is broken)", err, out)
	}
	out, err := command(cg, rt, "vm-mmap", lib).Output()
	if got := strings.TrimSpace(string(out)); !killedBySIGKILL(err) && !strings.HasPrefix(got, "NOT-MAPPED") {
		t.Errorf("denied library mapped executable by a CLONE_VM sharer: %v, %q; want no executable mapping left", err, got)
	}
}
