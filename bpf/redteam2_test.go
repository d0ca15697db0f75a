package bpf

// Red team, second pass: attacks on the mechanisms added after the first
// pass (path walk to the mount namespace's root, directory identity,
// PT_INTERP judging, cgroup move kill, the egress NAT check). Every
// TestRedteam2* test asserts the secure behaviour; one that fails is an open
// hole.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory-prefix rule denies by the directory's identity, walking the
// exec'd dentry's d_parent chain. A hard link of a file below the denied
// directory, made in another directory of the same file system, is the same
// inode under another parent: neither its path nor its parents name the
// denied directory, and the file's own identity is stored for exact rules
// only. Any process that may link the file (its owner, or CAP_FOWNER, as a
// container's root has) runs it.
func TestRedteam2ExecPrefixRuleEscapedByHardLink(t *testing.T) {
	openHole(t)
	env := newTestEnv(t)
	e := env.open(t)
	tree := newDeniedTree(t, "true")
	busybox, base, denied, bin := tree.busybox, tree.base, tree.denied, tree.bin
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}

	cg := deniedDirCgroup(t, env, e, "hardlink", denied, bin)

	// What the workload does: link(2) the denied file elsewhere, exec the link.
	link := filepath.Join(outside, "true")
	out, err := command(cg, busybox, "ln", bin, link).CombinedOutput()
	if err != nil {
		t.Fatalf("ln %s %s in the cgroup: %v: %s", bin, link, err, out)
	}
	if err := command(cg, link).Run(); !killedBySIGKILL(err) {
		t.Errorf("exec %s, a hard link of %s below the denied prefix %s/: err=%v, want killed by SIGKILL", link, bin, denied, err)
	}
}

// An overlay whose lower layer is the denied directory, mounted by the
// workload in a user and mount namespace of its own (no capability needed
// where user namespaces may be created). The exec'd file is the overlay's:
// its path is the overlay mount's, its d_parent chain ends at the overlay's
// root, and its device is the overlay's, so neither the path, nor the
// directory identity, nor an exact rule's (device, inode) sees the layer
// file below the denied directory.
func TestRedteam2ExecRuleEscapedByOverlayLower(t *testing.T) {
	openHole(t)
	env := newTestEnv(t)
	e := env.open(t)
	tree := newDeniedTree(t, "true")
	base, denied, bin := tree.base, tree.denied, tree.bin
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	cg := deniedDirCgroup(t, env, e, "overlay", denied, bin, bin)

	merged := filepath.Join(base, "merged")
	opts := "lowerdir=" + denied + ",upperdir=" + filepath.Join(base, "upper") + ",workdir=" + filepath.Join(base, "work")
	cmd := inUserMountNS(t, cg, []string{tree.busybox, "sh"}, `mount -t overlay overlay -o "$1" "$2" && exec "$2/true"`, opts, merged)
	wantKilled(t, cmd, fmt.Sprintf("overlay of %s on %s in a user namespace", denied, merged),
		fmt.Sprintf("exec %s/true, an overlay whose lower layer is the denied %s/", merged, denied))
}

// The move kill judges the mover by its task storage, set at exec and fork,
// since a task that moved itself already sits in the destination. An
// io_uring worker (io-wq, made by create_io_thread: no sched_process_fork)
// has none: a write of the process's pid to a cgroup.procs above its
// container, punted to the worker (IOSQE_ASYNC), moves the whole process
// with the worker, and the worker's cgroup then says it came from nowhere.
// Needs what the first pass's move needed: a writable cgroupfs in the host
// cgroup namespace.
func TestRedteam2MoveOutByIOURingWorker(t *testing.T) {
	m := newMoveOut(t, "uring-move")
	wantKilled(t, m.cmd, fmt.Sprintf("io_uring move from %s to %s", m.from, m.to),
		fmt.Sprintf("moved by an io_uring worker from %s to %s, then exec of the denied %s", m.from, m.to, m.denied))
}

// Routes against the second-pass mechanisms that hold today, kept as
// regression checks.
func TestRedteam2RoutesThatHold(t *testing.T) {
	env, e, rt := newRedteam(t)
	tree := newDeniedTree(t, "sub/true")
	busybox, base, denied, bin := tree.busybox, tree.base, tree.denied, tree.bin
	sub := filepath.Dir(bin)

	cg := deniedDirCgroup(t, env, e, "holds", denied, bin)

	// A detached clone of a directory below the prefix: the path ends at
	// the clone's root ("/true"), the directory identity does not.
	t.Run("open_tree clone", func(t *testing.T) {
		out, err := command(cg, rt, "tree-exec", sub, "true", "true").CombinedOutput()
		if !killedBySIGKILL(err) {
			t.Errorf("execveat of true in a detached clone of %s: err=%v, output %q; want killed by SIGKILL", sub, err, out)
		}
	})
	// binfmt_misc (mountable in a user namespace of the workload's own since
	// 6.7) naming a file below the prefix as the interpreter of an allowed
	// file, opened at registration (F): the interpreter is the file the
	// exec ends with, and it is judged.
	t.Run("binfmt_misc", func(t *testing.T) {
		data := filepath.Join(base, "data.rt2x")
		if err := os.WriteFile(data, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := inUserMountNS(t, cg, []string{busybox, "sh"}, `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc &&
				echo ":rt2:E::rt2x::$1:F" > /proc/sys/fs/binfmt_misc/register && exec "$2"`, bin, data)
		wantKilled(t, cmd, fmt.Sprintf("register %s as the binfmt_misc interpreter of %s", bin, data),
			fmt.Sprintf("exec %s through binfmt_misc with the interpreter %s", data, bin))
	})
	// Leaving the container's cgroup by clone3(CLONE_INTO_CGROUP): the
	// child is killed before it runs.
	t.Run("clone3 into another cgroup", func(t *testing.T) {
		out, err := command(cg, rt, "clone3-exec", env.cgroupRoot, busybox, "true").Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != "CHILD SIGNAL 9" {
			t.Errorf("clone3 CLONE_INTO_CGROUP %s from %s: err=%v, output %q; want CHILD SIGNAL 9", env.cgroupRoot, cg.dir, err, got)
		}
	})
	// A thread other than the one that exec'd moves the process out.
	t.Run("move by a thread", func(t *testing.T) {
		out, err := command(cg, rt, "thread-move", filepath.Join(env.cgroupRoot, "cgroup.procs"), busybox, "true").Output()
		if !killedBySIGKILL(err) {
			t.Errorf("moved by a second thread from %s to %s: err=%v, output %q; want killed by SIGKILL", cg.dir, env.cgroupRoot, err, out)
		}
	})
	// The denied directory renamed: its identity goes with it.
	t.Run("rename", func(t *testing.T) {
		moved := filepath.Join(base, "renamed")
		if out, err := command(cg, busybox, "mv", denied, moved).CombinedOutput(); err != nil {
			t.Fatalf("mv %s %s: %v: %s", denied, moved, err, out)
		}
		t.Cleanup(func() { os.Rename(moved, denied) })
		if err := command(cg, filepath.Join(moved, "sub", "true")).Run(); !killedBySIGKILL(err) {
			t.Errorf("exec below %s, the denied %s renamed: err=%v, want killed by SIGKILL", moved, denied, err)
		}
	})
	// pivot_root into a bind mount of a directory below the prefix, in a
	// mount namespace of its own: the path is "/true" there.
	t.Run("pivot_root", func(t *testing.T) {
		if err := pivoted(cg, sub, "/true").Run(); !killedBySIGKILL(err) {
			t.Errorf("exec /true after pivot_root into %s: err=%v, want killed by SIGKILL", sub, err)
		}
	})
}

// The egress NAT check lets a UDP datagram through whose destination is
// the one sendmsg4/6 last recorded on this CPU for this socket, and
// sendmsg4/6 records the destination before deciding, also for one it
// refuses. A workload with CAP_NET_ADMIN in its own network namespace
// connects a UDP socket to an allowed address that a nat rule rewrites to
// the denied one, sends once to the denied address (refused: EPERM, but
// recorded), then sends on the connected socket, which no sendmsg hook
// sees: egress finds the rewritten destination recorded and passes it.
func TestRedteam2UDPNATAfterRefusedSendto(t *testing.T) {
	cg, natRun := natRedteam(t, "udpnat", "udp-nat")
	run := func(cg *testCgroup, how string) string { return natRun(cg, "127.0.0.3", how) }
	if got := run(nil, "plain"); got != "SENT\nARRIVED" {
		t.Fatalf("outside the cgroup, a datagram to 127.0.0.3 rewritten to 127.0.0.2: %q, want it to arrive (the probe is broken)", got)
	}
	if got := run(cg, "plain"); strings.HasSuffix(got, "\nARRIVED") {
		t.Fatalf("in the cgroup, a datagram to 127.0.0.3 rewritten to the denied 127.0.0.2: %q, want it dropped", got)
	}
	if got := run(cg, "prime"); !strings.HasPrefix(got, "PRIME EPERM\n") || strings.HasSuffix(got, "\nARRIVED") {
		t.Errorf("in the cgroup, a refused sendto 127.0.0.2, then a datagram to 127.0.0.3 rewritten to the denied 127.0.0.2: %q; want the sendto refused and the datagram dropped", got)
	}
}

// openHole skips a test of a route README's "What stays uncovered" lists as
// open, unless HOLDFAST_OPEN_HOLES=1: the test then shows the hole (it
// fails) until a fix lands and removes this call.
func openHole(t *testing.T) {
	t.Helper()
	if os.Getenv("HOLDFAST_OPEN_HOLES") != "1" {
		t.Skip("open hole listed in README, What stays uncovered; HOLDFAST_OPEN_HOLES=1 runs it")
	}
}
