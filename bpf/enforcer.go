package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// Enforcement points and the modes they run in.
const (
	ControlExec    = "exec"
	ControlMmap    = "mmap" // a denied file mapped executable (ld.so run as a program, dlopen)
	ControlConnect = "connect"
	ControlMove    = "move" // a container's task moved out of its cgroup
	// ControlProcess tracks the processes of registered containers for
	// events and ancestry-scoped rules (process.h).
	ControlProcess = "process"
	ModeTracing    = "tracing"

	ModeLSM    = "lsm"    // exec fails with EPERM (lsm/bprm_check_security)
	ModeKill   = "kill"   // the new image gets SIGKILL before its first instruction
	ModeCgroup = "cgroup" // connect/sendmsg fail with EPERM (cgroup sock_addr hooks)
	ModeOff    = "off"    // the kernel lacks what the control needs
)

// A Control is one enforcement point, the mode it runs in and why.
type Control struct {
	Name   string
	Mode   string
	Reason string
}

// A PinnedObject is one pin in the ABI directory.
type PinnedObject struct {
	Path string
	Kind string // KindMap, KindProgram or KindLink
	ID   uint32
}

// Options configure Open.
type Options struct {
	// CgroupRoot is the cgroup v2 directory the connect programs attach to;
	// every cgroup below it is covered. Empty means the detected v2 root.
	CgroupRoot string
	// Log receives install, adoption and repair decisions. Nil discards them.
	Log *slog.Logger
	// Capacity sizes the maps when they are created. Adopted pinned maps
	// keep the capacity they have; MapUsage reports both.
	Capacity Capacity
}

// Program names in holdfast.c; each is pinned under progs/ and its link
// under links/ with the same name.
const (
	progExecKill     = holdfastProgExecKill
	progExecLSM      = holdfastProgExecLsm
	progMmapKill     = holdfastProgMmapKill
	progMmapKillExit = holdfastProgMmapKillExit
	progMmapLSM      = holdfastProgMmapLsm
	progMprotectLSM  = holdfastProgMprotectLsm
	progSocketKill   = holdfastProgSocketKill // tp_btf/sys_enter, lsm mode only
	progCgroupMove   = holdfastProgCgroupMove // tp_btf/cgroup_attach_task
	progCgroupFork   = holdfastProgCgroupFork // tp_btf/sched_process_fork
	progProcExec     = holdfastProgProcExec   // tp_btf/sched_process_exec (process table)
	progProcFork     = holdfastProgProcFork   // tp_btf/sched_process_fork
	progProcExit     = holdfastProgProcExit   // tp_btf/sched_process_exit
)

// movePrograms kill a container's task moved out of its cgroup; tracing
// programs, attached in every exec mode.
var movePrograms = []string{progCgroupMove, progCgroupFork}

// processPrograms keep the process table (process.h). They are attached
// before the exec mode's programs: a tracepoint runs its programs in the
// order they were attached, and the exec check reads the entry proc_exec
// makes for a container's first process.
var processPrograms = []string{progProcExec, progProcFork, progProcExit}

// alwaysPrograms are attached whatever the exec mode, next to its programs.
func alwaysPrograms() []string {
	return slices.Concat(processPrograms, movePrograms, cgroupHookNames())
}

// modePrograms are the programs of each exec mode: the exec hook first, then
// the hooks that deny mapping a denied file executable. A mode's programs are
// attached and adopted together. In kill mode mmap_kill, on sys_enter
// already, also kills packet socket callers; lsm mode has socket_kill there.
var modePrograms = map[string][]string{
	ModeLSM:  {progExecLSM, progMmapLSM, progMprotectLSM, progSocketKill},
	ModeKill: {progExecKill, progMmapKill, progMmapKillExit},
}

// Why each mode's mmap control holds, for Controls.
var mmapReasons = map[string]string{
	ModeLSM: "lsm/mmap_file and lsm/file_mprotect: mapping a denied file executable fails with EPERM",
	ModeKill: "tp_btf/sys_enter and sys_exit: a task that maps a denied file executable (mmap, mprotect, " +
		"pkey_mprotect; 64-bit and ia32 calls) gets SIGKILL before it returns to user space; a file of an overlay " +
		"(container root) is judged by the path the task opened, not its layer's",
}

// cgroupHooks are attached to Options.CgroupRoot with multi-attach links.
var cgroupHooks = []struct {
	prog   string
	attach ebpf.AttachType
}{
	{holdfastProgConnect4, ebpf.AttachCGroupInet4Connect},
	{holdfastProgConnect6, ebpf.AttachCGroupInet6Connect},
	{holdfastProgSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
	{holdfastProgSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
	{holdfastProgBind4, ebpf.AttachCGroupInet4Bind},
	{holdfastProgBind6, ebpf.AttachCGroupInet6Bind},
	{holdfastProgSockCreate, ebpf.AttachCGroupInetSockCreate},
	{holdfastProgEgress, ebpf.AttachCGroupInetEgress},
}

// errIncomplete means the ABI directory exists but cannot be adopted as is.
var errIncomplete = errors.New("pinned set incomplete")

// An Enforcer holds descriptors of one pinned program set and writes its
// rule maps. Its methods are safe for concurrent use.
type Enforcer struct {
	layout     Layout
	log        *slog.Logger
	cgroupRoot string

	maps holdfastMaps
	// inner4 and inner6 create each ruleset's own LPM tries.
	inner4, inner6 *ebpf.MapSpec
	progs          map[string]*ebpf.Program
	links          map[string]link.Link
	adopted        bool
	controls       []Control
	// requested is each configurable map's capacity as configured.
	requested map[string]uint32
	// hashKey is the PathHash key in the pinned exec_hash_key map; it is
	// made once per install and read back by every adopting Open.
	hashKey HashKey

	// mu orders ruleset writes, their conflict checks and the cgroup
	// entries that point at rulesets.
	mu sync.Mutex
	// partial holds ruleset IDs with rule entries but no rulesets entry
	// (an interrupted PutRuleset); putting such an ID clears them first so
	// stale rules cannot merge into the new content.
	partial map[uint32]bool
	// files indexes file_rules by cgroup (files.go).
	files fileIndex
	// captureEnv mirrors the capture_config switch this engine set.
	captureEnv atomic.Bool
	// kernelTypes parses the kernel's BTF once for the probes and every
	// program load of an Open (each parse costs tens of ms); nil after Open.
	kernelTypes *btf.Cache
	// probe completes controls on the first call of Controls. An adopted
	// set loads nothing, so its probes, which only explain the modes in
	// controls, wait until someone asks (adoptedControls).
	probe     func()
	probeOnce sync.Once
}

// Open adopts the complete pinned set of this ABI under layout, or loads,
// attaches and pins a new one (repairing a partial set, and keeping its maps
// and their rules when they are intact). Once this ABI's programs are
// attached, pins of other ABIs under layout.Root are removed. bpffs is
// mounted if nothing in Root's parent chain is one.
func Open(layout Layout, opts Options) (*Enforcer, error) {
	if err := layout.validate(); err != nil {
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cgroupRoot := opts.CgroupRoot
	if cgroupRoot == "" {
		m, err := cgroup.Detect()
		if err != nil {
			return nil, fmt.Errorf("open enforcer: %w", err)
		}
		cgroupRoot = m.Root
	}
	cgroupID, err := cgroup.ID(cgroupRoot)
	if err != nil {
		return nil, fmt.Errorf("open enforcer: cgroup root: %w", err)
	}
	if err := ensureBPFFS(layout.Root); err != nil {
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	// The BTF parse overlaps reading the object and the pinned maps; a
	// failure shows again, with its reason, where the types are used.
	kernelTypes := btf.NewCache()
	if _, err := os.Stat(layout.ABIDir()); err != nil {
		go kernelTypes.Kernel() // nothing to adopt: programs will load
	}
	spec, err := loadHoldfast()
	if err != nil {
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	if err := opts.Capacity.apply(spec); err != nil {
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	requested := map[string]uint32{}
	for _, name := range CapacityMaps {
		requested[name] = specCapacity(spec, name)
	}

	e := &Enforcer{
		layout:     layout,
		log:        log,
		cgroupRoot: cgroupRoot,
		progs:      map[string]*ebpf.Program{},
		links:      map[string]link.Link{},
		inner4:     spec.Maps[holdfastMapNet4Rules].InnerMap.Copy(),
		inner6:     spec.Maps[holdfastMapNet6Rules].InnerMap.Copy(),
		requested:  requested,

		kernelTypes: kernelTypes,
	}
	err = e.adopt(spec, cgroupID)
	switch {
	case err == nil:
		e.adopted = true
		log.Info("adopted pinned bpf programs", "dir", layout.ABIDir())
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, errIncomplete):
		log.Info("installing bpf programs", "dir", layout.ABIDir(), "reason", err.Error())
		e.closeAll()
		if err := e.install(spec); err != nil {
			e.closeAll()
			return nil, fmt.Errorf("open enforcer: %w", err)
		}
	default:
		e.closeAll()
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	if err := e.removeOtherABIs(); err != nil {
		e.closeAll()
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	rulesets, err := e.Rulesets()
	if err != nil {
		e.closeAll()
		return nil, fmt.Errorf("open enforcer: %w", err)
	}
	for _, name := range CapacityMaps {
		m := e.mapNamed(name)
		if m == nil {
			continue // per-ruleset tries are made with the configured size
		}
		if got := m.MaxEntries(); got != requested[name] {
			log.Warn("pinned map keeps its capacity; the configured one applies after uninstall", "map", name, "pinned", got, "configured", requested[name])
		}
	}
	e.notePartial(rulesets)
	// Only Open loads programs: the parsed kernel BTF (megabytes) goes.
	e.kernelTypes = nil
	return e, nil
}

// notePartial records the rulesets an interrupted PutRuleset left partial.
func (e *Enforcer) notePartial(rulesets map[uint32]bool) {
	e.partial = map[uint32]bool{}
	for id, complete := range rulesets {
		if !complete {
			e.partial[id] = true
		}
	}
}

// Adopted reports whether Open took over an existing pinned set rather than
// loading one.
func (e *Enforcer) Adopted() bool { return e.adopted }

// Controls reports each enforcement point's mode and why it was chosen.
// After an adopting Open, the first call runs the probes (tens of ms).
func (e *Enforcer) Controls() []Control {
	e.probeOnce.Do(func() {
		if e.probe != nil {
			e.probe()
			e.probe = nil
		}
	})
	return slices.Clone(e.controls)
}

// Layout is where this enforcer's pins live.
func (e *Enforcer) Layout() Layout { return e.layout }

// Close releases this process's descriptors. The pins keep enforcing.
func (e *Enforcer) Close() error {
	e.closeAll()
	return nil
}

func (e *Enforcer) closeAll() {
	for name, l := range e.links {
		l.Close()
		delete(e.links, name)
	}
	for name, p := range e.progs {
		p.Close()
		delete(e.progs, name)
	}
	e.maps.Close()
	e.maps = holdfastMaps{}
}

// Pinned lists the pins in this ABI's directory with their kernel IDs, as
// bpffs has them now.
func (e *Enforcer) Pinned() ([]PinnedObject, error) {
	return pinnedObjects(e.layout.ABIDir())
}

// Uninstall removes the pins of every ABI under layout.Root and then the
// directories. It returns once the programs are unloaded, or with an error
// if a process still holds them open (close Enforcers first).
func Uninstall(layout Layout) error {
	if err := layout.validate(); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	if _, err := os.Stat(layout.Root); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	others, err := layout.others()
	if err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	for _, dir := range append(others, layout.ABIDir()) {
		if err := layout.unpin(dir); err != nil {
			return fmt.Errorf("uninstall: %w", err)
		}
	}
	// Root itself goes unless it is the mount point of a bpffs.
	if magic, err := linux.FSMagic(filepath.Dir(layout.Root)); err == nil && magic == linux.BPFFSMagic {
		if err := os.Remove(layout.Root); err != nil {
			return fmt.Errorf("uninstall: remove %s: %w", layout.Root, err)
		}
	}
	return nil
}

// ensureBPFFS makes root a directory on a bpffs. If none is mounted on the
// way to root, it mounts one on the nearest existing ancestor when that is an
// empty directory (like /sys/fs/bpf, where directories cannot be created
// before the mount) and on root itself otherwise, hiding nothing.
func ensureBPFFS(root string) error {
	dir := root
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if magic, err := linux.FSMagic(dir); err != nil || magic != linux.BPFFSMagic {
		mountAt := root
		if entries, err := os.ReadDir(dir); err == nil && len(entries) == 0 && dir != root {
			mountAt = dir
		}
		if err := linux.MountBPFFS(mountAt); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create bpffs directory %s: %w", root, err)
	}
	if magic, err := linux.FSMagic(root); err != nil || magic != linux.BPFFSMagic {
		return fmt.Errorf("bpffs directory %s: not on a bpf filesystem (magic %#x, %v)", root, magic, err)
	}
	return nil
}

// adopt takes over the pinned set in the ABI dir. It returns an error
// wrapping os.ErrNotExist if there is none and errIncomplete if it is
// partial or attached to another cgroup root.
func (e *Enforcer) adopt(spec *ebpf.CollectionSpec, cgroupID uint64) error {
	dir := e.layout.ABIDir()
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("adopt %s: %w", dir, err)
	}
	maps, err := loadPinnedMaps(e.layout, spec)
	if err != nil {
		for _, m := range maps {
			m.Close()
		}
		return err
	}
	e.maps = mapsByName(maps)
	if err := e.readHashKey(); err != nil {
		return err
	}
	// Rewritten in case the set was pinned by a build that got it wrong.
	if err := e.writeFileConfig(); err != nil {
		return err
	}

	mode := ModeKill
	if _, err := os.Stat(e.layout.Pin(KindLink, progExecLSM)); err == nil {
		mode = ModeLSM
	}
	for _, name := range append(slices.Clone(modePrograms[mode]), alwaysPrograms()...) {
		if err := e.adoptLink(name, cgroupID); err != nil {
			return err
		}
	}

	// The pinned programs enforce as they are; the probes parse the
	// kernel's BTF (20-50 ms), which a restart need not wait for.
	kernelTypes := e.kernelTypes
	e.probe = func() { e.controls = adoptedControls(mode, kernelTypes, e.cgroupRoot) }
	return nil
}

// adoptedControls explains the modes of an adopted set in mode.
func adoptedControls(mode string, kernelTypes *btf.Cache, cgroupRoot string) []Control {
	exec := Control{ControlExec, ModeLSM, "adopted pinned lsm/bprm_check_security program"}
	if mode != ModeLSM {
		exec = Control{ControlExec, ModeKill,
			fmt.Sprintf("adopted pinned tp_btf/sched_process_exec program (%s)", lsmVerdict(haveLSM(kernelTypes)))}
	}
	return []Control{exec, {ControlMmap, mode, "adopted pinned " + mmapReasons[mode]},
		connectControl(cgroupRoot), moveControl(kernelTypes), processControl()}
}

// adoptLink loads a pinned program and its link and checks that the link
// runs that program (and, for cgroup hooks, on the configured root).
func (e *Enforcer) adoptLink(name string, cgroupID uint64) error {
	progPath, linkPath := e.layout.Pin(KindProgram, name), e.layout.Pin(KindLink, name)
	prog, err := ebpf.LoadPinnedProgram(progPath, nil)
	if err != nil {
		return fmt.Errorf("adopt program %s: %w: %w", progPath, errIncomplete, err)
	}
	e.progs[name] = prog
	l, err := link.LoadPinnedLink(linkPath, nil)
	if err != nil {
		return fmt.Errorf("adopt link %s: %w: %w", linkPath, errIncomplete, err)
	}
	e.links[name] = l
	linkInfo, err := l.Info()
	if err != nil {
		return fmt.Errorf("adopt link %s: info: %w", linkPath, err)
	}
	progInfo, err := prog.Info()
	if err != nil {
		return fmt.Errorf("adopt program %s: info: %w", progPath, err)
	}
	if id, ok := progInfo.ID(); !ok || id != linkInfo.Program {
		return fmt.Errorf("adopt link %s: %w: it runs program %d, not the pinned %s", linkPath, errIncomplete, linkInfo.Program, progPath)
	}
	if slices.Contains(cgroupHookNames(), name) {
		cg := linkInfo.Cgroup()
		if cg == nil || cg.CgroupId != cgroupID {
			return fmt.Errorf("adopt link %s: %w: attached to another cgroup than %s", linkPath, errIncomplete, e.cgroupRoot)
		}
	}
	return nil
}

func cgroupHookNames() []string {
	names := make([]string, len(cgroupHooks))
	for i, h := range cgroupHooks {
		names[i] = h.prog
	}
	return names
}

// moveControl says whether moves out of a container's cgroup are stopped:
// the programs signal the moved task, which needs the bpf_send_signal_task
// kfunc (Linux 6.13).
func moveControl(kernelTypes *btf.Cache) Control {
	spec, err := kernelTypes.Kernel()
	if err == nil {
		var fn *btf.Func
		err = spec.TypeByName("bpf_send_signal_task", &fn)
	}
	if err != nil {
		return Control{ControlMove, ModeOff, fmt.Sprintf("kernel has no bpf_send_signal_task kfunc (%v): a container task that can write a cgroup.procs above its container can leave it", err)}
	}
	return Control{ControlMove, ModeKill, "tp_btf/cgroup_attach_task and sched_process_fork: a task a container moves out of its own cgroup gets SIGKILL"}
}

// processControl: the tracking programs are tp_btf programs, which load
// wherever the exec kill mode does; Open fails without them.
func processControl() Control {
	return Control{ControlProcess, ModeTracing, "tp_btf/sched_process_fork, sched_process_exec and sched_process_exit keep the pinned process table: " +
		"events name a process and its ancestors, and ancestry-scoped rules see which ancestor binaries a process descends from"}
}

func connectControl(cgroupRoot string) Control {
	return Control{ControlConnect, ModeCgroup,
		fmt.Sprintf("cgroup/%s attached to %s", strings.Join(cgroupHookNames(), ","), cgroupRoot)}
}

// loadPinnedMaps loads every map of spec pinned in the ABI dir. Missing maps
// are left out with errIncomplete; a map whose layout differs is an error,
// since under one ABI it cannot happen by design.
func loadPinnedMaps(layout Layout, spec *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	maps := map[string]*ebpf.Map{}
	var missing []string
	for name, ms := range spec.Maps {
		path := layout.Pin(KindMap, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, name)
			continue
		}
		if err != nil {
			return maps, fmt.Errorf("load pinned map %s: %w", path, err)
		}
		maps[name] = m
		// A pinned map keeps its capacity whatever this engine asks for.
		ms := ms.Copy()
		ms.MaxEntries = m.MaxEntries()
		if err := ms.Compatible(m); err != nil {
			return maps, fmt.Errorf("pinned map %s does not match ABI %s (remove it with uninstall): %w", path, ABI, err)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return maps, fmt.Errorf("%w: maps %s not pinned", errIncomplete, strings.Join(missing, ","))
	}
	return maps, nil
}

func mapsByName(maps map[string]*ebpf.Map) holdfastMaps {
	return holdfastMaps{
		CgroupRules: maps[holdfastMapCgroupRules],
		Counters:    maps[holdfastMapCounters],
		Denials:     maps[holdfastMapDenials],
		Events:      maps[holdfastMapEvents],
		ExecHashKey: maps[holdfastMapExecHashKey],
		ExecRules:   maps[holdfastMapExecRules],
		FileRules:   maps[holdfastMapFileRules],
		Net4Rules:   maps[holdfastMapNet4Rules],
		Net6Rules:   maps[holdfastMapNet6Rules],
		NetKeyTypes: maps[holdfastMapNetKeyTypes],
		PortChunks:  maps[holdfastMapPortChunks],
		Rulesets:    maps[holdfastMapRulesets],
		SocketRules: maps[holdfastMapSocketRules],
		BindRules:   maps[holdfastMapBindRules],
		MmapConfig:  maps[holdfastMapMmapConfig],
		MmapTasks:   maps[holdfastMapMmapTasks],
		MmapPasses:  maps[holdfastMapMmapPasses],
		PathGen:     maps[holdfastMapPathGen],
		FileConfig:  maps[holdfastMapFileConfig],
		TaskOwners:  maps[holdfastMapTaskOwners],
		AuditRules:  maps[holdfastMapAuditRules],
		Processes:   maps[holdfastMapProcesses],
		ProcessKept: maps[holdfastMapProcessKept],

		ProcessScratch: maps[holdfastMapProcessScratch],

		CaptureConfig:     maps[holdfastMapCaptureConfig],
		ProcessEnvs:       maps[holdfastMapProcessEnvs],
		ProcessEnvScratch: maps[holdfastMapProcessEnvScratch],
	}
}

// bumpRulesGen voids the passes the mapping checks cached under the exec
// rules as they were: called after every change of exec rules.
func (e *Enforcer) bumpRulesGen() error {
	return e.putMmapConfig(func(*holdfastMmapConfig) {})
}

// putMmapConfig applies change to the config and moves rules_gen forward:
// past its old value and to the current time, so that two processes writing
// it never bring back a value a cached pass holds.
func (e *Enforcer) putMmapConfig(change func(*holdfastMmapConfig)) error {
	var c holdfastMmapConfig
	if err := e.maps.MmapConfig.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read map %s: %w", holdfastMapMmapConfig, err)
	}
	change(&c)
	c.RulesGen = max(c.RulesGen+1, uint64(time.Now().UnixNano()))
	if err := e.maps.MmapConfig.Put(uint32(0), c); err != nil {
		return fmt.Errorf("write map %s: %w", holdfastMapMmapConfig, err)
	}
	return nil
}

// install loads and attaches a new set and commits it to the ABI dir. Maps
// already pinned there are kept, so a repair does not drop rules.
func (e *Enforcer) install(spec *ebpf.CollectionSpec) error {
	maps, err := loadPinnedMaps(e.layout, spec)
	if err != nil && !errors.Is(err, errIncomplete) {
		for _, m := range maps {
			m.Close()
		}
		return err
	}
	created := map[string]bool{}
	for name, ms := range spec.Maps {
		if maps[name] != nil {
			continue
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			for _, m := range maps {
				m.Close()
			}
			return fmt.Errorf("create map %s: %w", name, err)
		}
		maps[name] = m
		created[name] = true
	}
	e.maps = mapsByName(maps)
	if err := e.initHashKey(created); err != nil {
		return err
	}
	if err := e.writeFileConfig(); err != nil {
		return err
	}
	// A fresh generation: passes cached by programs of a replaced set are void.
	if err := e.bumpRulesGen(); err != nil {
		return err
	}

	if err := e.attachTracing(spec, maps, processPrograms); err != nil {
		return err
	}
	if err := e.attachExec(spec, maps); err != nil {
		return err
	}
	if err := e.attachTracing(spec, maps, movePrograms); err != nil {
		return err
	}
	progs, err := loadPrograms(e.kernelTypes, spec, maps, cgroupHookNames()...)
	if err != nil {
		return err
	}
	for name, p := range progs {
		e.progs[name] = p
	}
	for _, h := range cgroupHooks {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: e.cgroupRoot, Attach: h.attach, Program: e.progs[h.prog]})
		if err != nil {
			return fmt.Errorf("attach %s to cgroup %s: %w", h.prog, e.cgroupRoot, err)
		}
		e.links[h.prog] = l
	}
	e.controls = append(e.controls, connectControl(e.cgroupRoot), moveControl(e.kernelTypes), processControl())
	return e.commit(maps)
}

// initHashKey makes a new PathHash key when the key map is new and reads
// the kept one otherwise. A new key next to kept exec rules (a key map
// removed by hand) makes their hashes meaningless, so they are dropped and
// their rulesets left for the engine to put again.
func (e *Enforcer) initHashKey(created map[string]bool) error {
	if !created[holdfastMapExecHashKey] {
		return e.readHashKey()
	}
	var buf [16]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return fmt.Errorf("make path hash key: %w", err)
	}
	k := holdfastHashKey{K0: binary.LittleEndian.Uint64(buf[:8]), K1: binary.LittleEndian.Uint64(buf[8:])}
	if err := e.maps.ExecHashKey.Update(uint32(0), k, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write path hash key to %s: %w", holdfastMapExecHashKey, err)
	}
	// Frozen, the key can no longer be changed from user space.
	if err := e.maps.ExecHashKey.Freeze(); err != nil {
		return fmt.Errorf("freeze %s: %w", holdfastMapExecHashKey, err)
	}
	e.hashKey = HashKey{K0: k.K0, K1: k.K1}
	if !created[holdfastMapExecRules] {
		return e.dropExecRules()
	}
	return nil
}

// readHashKey loads the key from the pinned key map.
func (e *Enforcer) readHashKey() error {
	var k holdfastHashKey
	if err := e.maps.ExecHashKey.Lookup(uint32(0), &k); err != nil {
		return fmt.Errorf("read path hash key from %s: %w", holdfastMapExecHashKey, err)
	}
	if k.K0 == 0 && k.K1 == 0 {
		return fmt.Errorf("read path hash key: map %s holds no key (remove the pins with uninstall)", e.layout.Pin(KindMap, holdfastMapExecHashKey))
	}
	e.hashKey = HashKey{K0: k.K0, K1: k.K1}
	return nil
}

// dropExecRules deletes every exec rule and the rulesets entries of the
// rulesets that had any, so those rulesets read as absent or partial.
func (e *Enforcer) dropExecRules() error {
	ids := map[uint32]bool{}
	keys, err := keysOf[holdfastExecKey](e.maps.ExecRules, func(k holdfastExecKey) bool {
		ids[k.Ruleset] = true
		return true
	})
	if err != nil {
		return fmt.Errorf("drop exec rules hashed with a lost key: %w", err)
	}
	if len(keys) > 0 {
		e.log.Warn("path hash key was missing; dropping exec rules hashed with the old key", "rules", len(keys))
	}
	for id := range ids {
		if err := e.maps.Rulesets.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("drop ruleset %d from rulesets: %w", id, err)
		}
	}
	for _, k := range keys {
		if err := e.maps.ExecRules.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("drop exec rule from exec_rules: %w", err)
		}
	}
	return nil
}

// attachExec attaches the exec and mmap programs: the LSM ones where the
// probe says they work, else the tracing kill fallback. The reason is kept
// for Controls.
func (e *Enforcer) attachExec(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map) error {
	lsmErr := haveLSM(e.kernelTypes)
	why := lsmVerdict(lsmErr)
	if lsmErr == nil {
		err := e.attachMode(spec, maps, ModeLSM)
		if err == nil {
			e.controls = append(e.controls, Control{ControlExec, ModeLSM, why}, Control{ControlMmap, ModeLSM, mmapReasons[ModeLSM]})
			return nil
		}
		why = fmt.Sprintf("BPF LSM probe passed but %v", err)
		e.log.Warn("falling back to kill mode for exec", "reason", why)
	}
	if err := e.attachMode(spec, maps, ModeKill); err != nil {
		return err
	}
	e.controls = append(e.controls,
		Control{ControlExec, ModeKill, why + "; denied execs are killed by tp_btf/sched_process_exec before their first instruction"},
		Control{ControlMmap, ModeKill, mmapReasons[ModeKill]})
	return nil
}

// attachMode loads and attaches the programs of one exec mode, all or none.
func (e *Enforcer) attachMode(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, mode string) error {
	names := modePrograms[mode]
	progs, err := loadPrograms(e.kernelTypes, spec, maps, names...)
	if err != nil {
		return err
	}
	links := map[string]link.Link{}
	for _, name := range names {
		var l link.Link
		if progs[name].Type() == ebpf.LSM {
			l, err = link.AttachLSM(link.LSMOptions{Program: progs[name]})
		} else {
			l, err = link.AttachTracing(link.TracingOptions{Program: progs[name], AttachType: ebpf.AttachTraceRawTp})
		}
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			for _, p := range progs {
				p.Close()
			}
			return fmt.Errorf("attach %s: %w", name, err)
		}
		links[name] = l
	}
	for _, name := range names {
		e.progs[name], e.links[name] = progs[name], links[name]
	}
	return nil
}

// attachTracing attaches tracing programs of every exec mode: those that
// kill a task moved out of its container's cgroup, those that keep the
// process table.
func (e *Enforcer) attachTracing(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, names []string) error {
	progs, err := loadPrograms(e.kernelTypes, spec, maps, names...)
	if err != nil {
		return err
	}
	for _, name := range names {
		e.progs[name] = progs[name]
	}
	for _, name := range names {
		l, err := link.AttachTracing(link.TracingOptions{Program: progs[name], AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			return fmt.Errorf("attach %s: %w", name, err)
		}
		e.links[name] = l
	}
	return nil
}

// loadPrograms loads the named programs of spec against the given maps.
func loadPrograms(kernelTypes *btf.Cache, spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, names ...string) (map[string]*ebpf.Program, error) {
	s := spec.Copy()
	for name := range s.Programs {
		if !slices.Contains(names, name) {
			delete(s.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(s, ebpf.CollectionOptions{MapReplacements: maps, Cache: kernelTypes})
	if err != nil {
		return nil, fmt.Errorf("load programs %s: %w", strings.Join(names, ","), err)
	}
	defer coll.Close()
	progs := map[string]*ebpf.Program{}
	for _, name := range names {
		progs[name] = coll.DetachProgram(name)
	}
	return progs, nil
}

// commit pins the set under a staging directory and renames it to the ABI
// dir in one step. A previous (partial) ABI dir is moved aside first and
// removed last, so its links stay attached until the new ones are pinned.
func (e *Enforcer) commit(maps map[string]*ebpf.Map) error {
	root := e.layout.Root
	staging, err := os.MkdirTemp(root, stagingPrefix+ABI+"-")
	if err != nil {
		return fmt.Errorf("create staging dir in %s: %w", root, err)
	}
	committed := false
	defer func() {
		if !committed {
			e.layout.remove(staging)
		}
	}()
	for _, sub := range kindDirs {
		if err := os.Mkdir(filepath.Join(staging, sub), 0o700); err != nil {
			return fmt.Errorf("create staging dir: %w", err)
		}
	}
	for name, m := range maps {
		// A clone has no pin path, so Pin adds a pin instead of moving the
		// one of the set being repaired.
		clone, err := m.Clone()
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
		err = clone.Pin(pinIn(staging, KindMap, name))
		clone.Close()
		if err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	for name, p := range e.progs {
		if err := p.Pin(pinIn(staging, KindProgram, name)); err != nil {
			return fmt.Errorf("pin program %s: %w", name, err)
		}
	}
	for name, l := range e.links {
		if err := l.Pin(pinIn(staging, KindLink, name)); err != nil {
			return fmt.Errorf("pin link %s: %w", name, err)
		}
	}

	abiDir := e.layout.ABIDir()
	trash := filepath.Join(root, trashPrefix+strings.TrimPrefix(filepath.Base(staging), stagingPrefix))
	hadOld := false
	if _, err := os.Stat(abiDir); err == nil {
		if err := e.layout.rename(abiDir, trash); err != nil {
			return err
		}
		hadOld = true
	}
	if err := e.layout.rename(staging, abiDir); err != nil {
		if hadOld {
			e.layout.rename(trash, abiDir)
		}
		return err
	}
	committed = true
	if hadOld {
		e.log.Info("replaced partial pinned set", "dir", abiDir)
		return e.unpinReplaced(trash)
	}
	return nil
}

// removeOtherABIs unpins other ABI dirs and leftovers of interrupted
// installs. It runs only after this ABI's programs are attached.
func (e *Enforcer) removeOtherABIs() error {
	others, err := e.layout.others()
	if err != nil {
		return err
	}
	for _, dir := range others {
		e.log.Info("removing pins of another ABI or an interrupted install", "dir", dir)
		if err := e.unpinReplaced(dir); err != nil {
			return err
		}
	}
	return nil
}

// unpinReplaced removes a set the new one replaces. Programs that another
// process still holds are not an error here: the new set is attached, and
// they go when that process exits.
func (e *Enforcer) unpinReplaced(dir string) error {
	err := e.layout.unpin(dir)
	if errors.Is(err, errStillLoaded) {
		e.log.Warn("replaced bpf programs are still loaded", "dir", dir, "err", err)
		return nil
	}
	return err
}

// pinnedObjects lists the pins of one ABI dir.
func pinnedObjects(dir string) ([]PinnedObject, error) {
	var objs []PinnedObject
	for _, kind := range []string{KindMap, KindProgram, KindLink} {
		sub := filepath.Join(dir, kindDirs[kind])
		entries, err := os.ReadDir(sub)
		if err != nil {
			return nil, fmt.Errorf("list pins in %s: %w", sub, err)
		}
		for _, ent := range entries {
			path := filepath.Join(sub, ent.Name())
			id, err := pinnedID(kind, path)
			if err != nil {
				return nil, err
			}
			objs = append(objs, PinnedObject{Path: path, Kind: kind, ID: id})
		}
	}
	return objs, nil
}

func pinnedID(kind, path string) (uint32, error) {
	switch kind {
	case KindMap:
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return 0, fmt.Errorf("load pinned map %s: %w", path, err)
		}
		defer m.Close()
		info, err := m.Info()
		if err != nil {
			return 0, fmt.Errorf("info of map %s: %w", path, err)
		}
		id, _ := info.ID()
		return uint32(id), nil
	case KindProgram:
		p, err := ebpf.LoadPinnedProgram(path, nil)
		if err != nil {
			return 0, fmt.Errorf("load pinned program %s: %w", path, err)
		}
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			return 0, fmt.Errorf("info of program %s: %w", path, err)
		}
		id, _ := info.ID()
		return uint32(id), nil
	default:
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return 0, fmt.Errorf("load pinned link %s: %w", path, err)
		}
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return 0, fmt.Errorf("info of link %s: %w", path, err)
		}
		return uint32(info.ID), nil
	}
}
