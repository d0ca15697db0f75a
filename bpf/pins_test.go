package bpf

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/test/require"
)

func pinIDs(t *testing.T, pins []PinnedObject) map[string]uint32 {
	t.Helper()
	ids := map[string]uint32{}
	for _, p := range pins {
		ids[p.Path] = p.ID
	}
	return ids
}

func linkExists(id uint32) bool {
	l, err := link.NewFromID(link.ID(id))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// requireLSM skips t where the probe says BPF LSM programs cannot work, and
// fails it in strict mode where the probe could not tell.
func requireLSM(t *testing.T, feature string) {
	t.Helper()
	err := HaveLSM()
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		require.Unsupported(t, feature, err)
	case err != nil:
		require.Privileged(t, feature, err)
	}
}

// lsmDenying opens an enforcer where BPF LSM programs load (else a skip
// naming feature), checks that control runs in lsm mode, and registers a
// cgroup under ruleset 1, which denies path by rule 1; r reads its events.
func lsmDenying(t *testing.T, feature, control, path string) (cg *testCgroup, r *EventReader) {
	t.Helper()
	require.Root(t)
	requireLSM(t, feature)
	env := newTestEnv(t)
	e := env.open(t)
	i := slices.IndexFunc(e.Controls(), func(c Control) bool { return c.Name == control })
	if i < 0 || e.Controls()[i].Mode != ModeLSM {
		t.Fatalf("probe says supported but the %s control is %+v", control, e.Controls())
	}
	cg = env.cgroup(t, "lsm")
	enforce(t, e, cg, Ruleset{ID: 1, Exec: []ExecRule{mustExecRule(t, path, 1)}})
	return cg, openEvents(t, e)
}

// waitDetached waits until prog no longer runs on cgroupDir for attach after
// its link's pin was removed. The kernel frees the link's ID before it
// detaches the program, so the cgroup's own list is what says it is gone;
// the deadline only guards a hang.
func waitDetached(t *testing.T, cgroupDir string, attach ebpf.AttachType, prog uint32) {
	t.Helper()
	dir, err := os.Open(cgroupDir)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: attach})
		if err != nil {
			t.Fatalf("query %s programs on %s: %v", attach, cgroupDir, err)
		}
		attached := false
		for _, p := range res.Programs {
			attached = attached || uint32(p.ID) == prog
		}
		if !attached {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("program %d still attached to %s after its link's pin was removed", prog, cgroupDir)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantPins checks that dir holds exactly the pins of one set in kill mode.
func wantPins(t *testing.T, layout Layout, pins []PinnedObject) {
	t.Helper()
	var got []string
	for _, p := range pins {
		rel, _ := filepath.Rel(layout.ABIDir(), p.Path)
		got = append(got, p.Kind+":"+rel)
		if p.ID == 0 {
			t.Errorf("pin %s has no ID", p.Path)
		}
	}
	var want []string
	for _, m := range []string{"audit_rules", "bind_rules", "capture_config", "cgroup_rules", "counters", "denials", "events", "exec_hash_key", "exec_rules", "file_config", "file_rules", "mmap_config", "mmap_passes", "mmap_tasks", "net4_rules", "net6_rules", "net_key_types", "path_gen", "port_chunks", "process_env_scratch", "process_envs", "process_kept", "process_scratch", "processes", "rulesets", "sendmsg_passes", "socket_rules", "task_owners"} {
		want = append(want, KindMap+":maps/"+m)
	}
	for _, kind := range []string{KindProgram, KindLink} {
		for _, p := range append(slices.Clone(modePrograms[ModeKill]), alwaysPrograms()...) {
			want = append(want, kind+":"+kindDirs[kind]+"/"+p)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("pins\n got %v\nwant %v", got, want)
	}
}

func TestPinsSurviveAndAdopt(t *testing.T) {
	env := newTestEnv(t)
	cg := env.cgroup(t, "survive")
	id := resolved(t, "/usr/bin/id")
	trueBin := resolved(t, "/usr/bin/true")

	// A process that loads, pins, writes rules and exits.
	out, err := helper(nil, "install", env.layout.Root, env.cgroupRoot, strconv.FormatUint(cg.id, 10), id).Output()
	if err != nil {
		var ee *exec.ExitError
		errors.As(err, &ee)
		t.Fatalf("install helper: %v: %s", err, ee.Stderr)
	}
	var installed []PinnedObject
	if err := json.Unmarshal(out, &installed); err != nil {
		t.Fatalf("install helper output %q: %v", out, err)
	}
	wantPins(t, env.layout, installed)

	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Fatalf("after the loader exited: want SIGKILL, got %v", err)
	}
	// The loader route is closed by pinned links too.
	ldso := loaderPath(t)
	if err := command(cg, ldso, id).Run(); !killedBySIGKILL(err) {
		t.Fatalf("%s %s after the loader exited: want SIGKILL, got %v", ldso, id, err)
	}

	e := env.open(t)
	if !e.Adopted() {
		t.Fatal("Open did not adopt the complete pinned set")
	}
	pins, err := e.Pinned()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pinIDs(t, pins), pinIDs(t, installed); !maps.Equal(got, want) {
		t.Fatalf("adoption changed pinned objects:\n got %v\nwant %v", got, want)
	}
	controls := e.Controls()
	if len(controls) != 5 || controls[0].Name != ControlExec || controls[0].Mode != ModeKill ||
		!strings.Contains(controls[0].Reason, "adopted") ||
		controls[1].Name != ControlMmap || controls[1].Mode != ModeKill || !strings.Contains(controls[1].Reason, "adopted") ||
		controls[2].Mode != ModeCgroup || controls[3].Name != ControlMove || controls[4].Name != ControlProcess {
		t.Errorf("controls after adoption: %+v", controls)
	}
	if cgroups, err := e.Cgroups(); err != nil || cgroups[cg.id] != 1 {
		t.Errorf("cgroups after adoption: %v, %v", cgroups, err)
	}

	// Rules written after adoption take effect.
	cg2 := env.cgroup(t, "after-adoption")
	enforce(t, e, cg2, Ruleset{ID: 2, Exec: []ExecRule{mustExecRule(t, trueBin, 2)}})
	if err := command(cg2, trueBin).Run(); !killedBySIGKILL(err) {
		t.Fatalf("rule added after adoption: want SIGKILL, got %v", err)
	}
	if err := command(cg2, id).Run(); err != nil {
		t.Fatalf("id in the second cgroup: %v", err)
	}
	// A ruleset the exited loader stored can be given to new cgroups.
	cg3 := env.cgroup(t, "adopted-ruleset")
	if err := e.SetCgroup(cg3.id, 1); err != nil {
		t.Fatal(err)
	}
	if err := command(cg3, id).Run(); !killedBySIGKILL(err) {
		t.Fatalf("cgroup set to the adopted ruleset: want SIGKILL, got %v", err)
	}

	// Close keeps enforcing; Uninstall stops it and leaves nothing.
	e.Close()
	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Fatalf("after Close: want SIGKILL, got %v", err)
	}
	if err := command(cg, ldso, id).Run(); !killedBySIGKILL(err) {
		t.Fatalf("%s %s after Close: want SIGKILL, got %v", ldso, id, err)
	}
	if err := Uninstall(env.layout); err != nil {
		t.Fatal(err)
	}
	if err := command(cg, id).Run(); err != nil {
		t.Fatalf("after Uninstall: %v", err)
	}
	if err := command(cg, ldso, id).Run(); err != nil {
		t.Fatalf("%s %s after Uninstall: %v", ldso, id, err)
	}
	if _, err := os.Stat(env.layout.Root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Uninstall, %s: %v", env.layout.Root, err)
	}
	for _, p := range installed {
		if p.Kind == KindLink && linkExists(p.ID) {
			t.Errorf("link %d (%s) still exists after Uninstall", p.ID, p.Path)
		}
	}
	if err := Uninstall(env.layout); err != nil {
		t.Errorf("second Uninstall: %v", err)
	}
}

func TestRepairPartialSet(t *testing.T) {
	env := newTestEnv(t)
	cg := env.cgroup(t, "repair")
	id := resolved(t, "/usr/bin/id")
	ls := newListeners(t)

	e := env.open(t)
	rs := Ruleset{ID: 5,
		Exec:    []ExecRule{mustExecRule(t, id, 1)},
		Connect: []NetRule{{Prefix: mustPrefix(t, "127.0.0.1/32"), PortHi: 65535, RuleID: 2}},
	}
	enforce(t, e, cg, rs)
	before, err := e.Pinned()
	if err != nil {
		t.Fatal(err)
	}
	e.Close()

	// A half-written set: one link pin is gone (and with it the hook, once
	// the kernel has released the link).
	if err := os.Remove(env.layout.Pin(KindLink, holdfastProgConnect4)); err != nil {
		t.Fatal(err)
	}
	waitDetached(t, env.cgroupRoot, ebpf.AttachCGroupInet4Connect, pinIDs(t, before)[env.layout.Pin(KindProgram, holdfastProgConnect4)])
	runNetCheck(t, cg, netCheck{"dial", "tcp4", "-", ls.tcp4, "OK"})

	e2 := env.open(t)
	if e2.Adopted() {
		t.Fatal("Open adopted a set with a missing link")
	}
	after, err := e2.Pinned()
	if err != nil {
		t.Fatal(err)
	}
	wantPins(t, env.layout, after)
	oldIDs, newIDs := pinIDs(t, before), pinIDs(t, after)
	for _, p := range before {
		switch p.Kind {
		case KindMap:
			if newIDs[p.Path] != p.ID {
				t.Errorf("map %s was replaced (id %d -> %d); a repair keeps the rules", p.Path, p.ID, newIDs[p.Path])
			}
		case KindLink:
			if newIDs[p.Path] == oldIDs[p.Path] {
				t.Errorf("link %s was not replaced", p.Path)
			}
			if linkExists(p.ID) {
				t.Errorf("old link %d (%s) still attached after the repair", p.ID, p.Path)
			}
		}
	}
	if err := command(cg, id).Run(); !killedBySIGKILL(err) {
		t.Fatalf("after repair: want SIGKILL, got %v", err)
	}
	runNetCheck(t, cg, netCheck{"dial", "tcp4", "-", ls.tcp4, "EPERM"})
	entries, err := os.ReadDir(env.layout.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != ABI {
		t.Errorf("entries in %s after repair: %v, want only %s", env.layout.Root, entries, ABI)
	}
}

// pinOldABI pins a v0 set: one map, one cgroup/connect4 program that allows
// everything, and its link on the env's cgroup root. It returns the link ID.
func pinOldABI(t *testing.T, env *testEnv) uint32 {
	t.Helper()
	old := filepath.Join(env.layout.Root, "v0")
	for _, sub := range kindDirs {
		if err := os.MkdirAll(filepath.Join(old, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCGroupInet4Connect, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: env.cgroupRoot, Attach: ebpf.AttachCGroupInet4Connect, Program: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := m.Pin(filepath.Join(old, "maps", "old")); err != nil {
		t.Fatal(err)
	}
	if err := prog.Pin(filepath.Join(old, "progs", "connect4")); err != nil {
		t.Fatal(err)
	}
	if err := l.Pin(filepath.Join(old, "links", "connect4")); err != nil {
		t.Fatal(err)
	}
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(info.ID)
}

func TestOldABIRemovedAfterAttach(t *testing.T) {
	env := newTestEnv(t)
	if err := os.MkdirAll(env.layout.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	oldLink := pinOldABI(t, env)
	oldDir := filepath.Join(env.layout.Root, "v0")

	// The new set cannot be committed (its directory name is taken by a
	// dangling symlink): Open fails after attaching, and the old set must
	// still be there, attached.
	if err := os.Symlink("nowhere", env.layout.ABIDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(env.layout, Options{CgroupRoot: env.cgroupRoot, Log: testLogger(t)}); err == nil {
		t.Fatal("Open succeeded with its ABI dir blocked")
	}
	if _, err := os.Stat(filepath.Join(oldDir, "links", "connect4")); err != nil {
		t.Fatalf("old ABI removed although the new one failed: %v", err)
	}
	if !linkExists(oldLink) {
		t.Fatal("old link detached although the new one failed")
	}
	entries, err := os.ReadDir(env.layout.Root)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		if strings.HasPrefix(ent.Name(), stagingPrefix) {
			t.Errorf("failed Open left %s behind", ent.Name())
		}
	}

	if err := os.Remove(env.layout.ABIDir()); err != nil {
		t.Fatal(err)
	}
	e := env.open(t)
	pins, err := e.Pinned()
	if err != nil {
		t.Fatal(err)
	}
	wantPins(t, env.layout, pins)
	if _, err := os.Stat(oldDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old ABI dir after Open: %v", err)
	}
	if linkExists(oldLink) {
		t.Errorf("old ABI link %d still attached", oldLink)
	}
}

func TestLayoutRefusesPathsOutside(t *testing.T) {
	l := Layout{Root: "/sys/fs/bpf/holdfast"}
	for _, p := range []string{"/sys/fs/bpf/holdfast", "/sys/fs/bpf/other", "/sys/fs/bpf", "/sys/fs/bpf/holdfast/../x", "v1"} {
		err := l.remove(p)
		var pe *fs.PathError
		if !errors.As(err, &pe) || !errors.Is(err, ErrOutsideLayout) || pe.Path != p || pe.Op != "remove" {
			t.Errorf("remove(%q) = %v, want a PathError for a path outside the layout", p, err)
		}
	}
	for _, root := range []string{"", "relative", "/", "/a/../b", "/a/"} {
		if _, err := Open(Layout{Root: root}, Options{}); err == nil || !strings.Contains(err.Error(), "layout root") {
			t.Errorf("Open(%q) = %v, want a layout error", root, err)
		}
	}
	if got := (Layout{Root: "/r"}).Pin(KindLink, "exec_kill"); got != "/r/"+ABI+"/links/exec_kill" {
		t.Errorf("link pin path %q", got)
	}
}

func TestControlsFollowLSMProbe(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	lsmErr := HaveLSM()
	controls := e.Controls()
	if len(controls) != 5 || controls[4].Name != ControlProcess {
		t.Fatalf("controls %+v", controls)
	}
	exec := controls[0]
	wantMode := ModeKill
	if lsmErr == nil {
		wantMode = ModeLSM
	}
	if exec.Name != ControlExec || exec.Mode != wantMode || !strings.Contains(exec.Reason, lsmVerdict(lsmErr)) {
		t.Errorf("exec control %+v, want mode %s with the probe's reason %q", exec, wantMode, lsmVerdict(lsmErr))
	}
	if c := controls[1]; c.Name != ControlMmap || c.Mode != wantMode || c.Reason != mmapReasons[wantMode] {
		t.Errorf("mmap control %+v, want mode %s", c, wantMode)
	}
	if c := controls[2]; c.Name != ControlConnect || c.Mode != ModeCgroup || !strings.Contains(c.Reason, env.cgroupRoot) {
		t.Errorf("connect control %+v", c)
	}
	// Whether moves are stopped is proven by TestRedteamMoveOutOfContainerCgroup.
	if c := controls[3]; c.Name != ControlMove || (c.Mode != ModeKill && c.Mode != ModeOff) || c.Reason == "" {
		t.Errorf("move control %+v, want kill or off with a reason", c)
	}
}

func TestLSMMode(t *testing.T) {
	id := resolved(t, "/usr/bin/id")
	cg, r := lsmDenying(t, "BPF LSM (lsm/bprm_check_security)", ControlExec, id)
	if err := command(cg, id).Run(); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("exec in lsm mode: %v, want EPERM", err)
	}
	if ev := readEvent(t, r); ev.Action != ActionExecDenied || ev.RuleID != 1 {
		t.Errorf("event %+v, want exec-denied by rule 1", ev)
	}
}

func TestOpenMountsBPFFS(t *testing.T) {
	require.Root(t)
	mount, err := cgroup.Detect()
	require.Privileged(t, "cgroup v2", err)
	for _, tc := range []struct {
		name     string
		keepFile bool // a non-empty parent must not be hidden by the mount
	}{{"empty parent", false}, {"non-empty parent", true}} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			if tc.keepFile {
				if err := os.WriteFile(filepath.Join(parent, "keep"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			layout := Layout{Root: filepath.Join(parent, "holdfast")}
			mountPoint := parent
			if tc.keepFile {
				mountPoint = layout.Root
			}
			e, err := Open(layout, Options{CgroupRoot: mount.Root, Log: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				e.Close()
				// Unmounting drops the pins, detaching the programs.
				if out, err := exec.Command("umount", mountPoint).CombinedOutput(); err != nil {
					t.Errorf("unmount %s: %v: %s", mountPoint, err, out)
				}
			})
			if magic, err := linux.FSMagic(mountPoint); err != nil || magic != linux.BPFFSMagic {
				t.Fatalf("%s is not a bpffs after Open: %#x, %v", mountPoint, magic, err)
			}
			if tc.keepFile {
				if _, err := os.Stat(filepath.Join(parent, "keep")); err != nil {
					t.Errorf("mount hid the parent's contents: %v", err)
				}
			}
			if _, err := os.Stat(layout.Pin(KindLink, progExecKill)); err != nil {
				t.Error(err)
			}
		})
	}
}
