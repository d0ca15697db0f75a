// Package lineage names the processes of a container and their ancestors
// for events: exec IDs that BPF and /proc agree on, and the walk up a
// process's parents through the pinned process table, falling back to
// /proc for processes the table never saw. It holds no state of its own.
//
// Only the engine (engine/daemon) imports it.
package lineage

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
)

// Limits of what an event carries about one process.
const (
	MaxArgs   = 16  // argv elements
	MaxArgLen = 256 // bytes of argv read from /proc (the table keeps 255)
	MaxEnv    = 64  // environment variables
	// MaxEnvLen is the bytes of environment kept, from the table or /proc.
	MaxEnvLen = 1023
	// MaxDepth bounds the walk: a chain longer than this is reported
	// incomplete rather than followed.
	MaxDepth = 64
)

// ExecID is the stable name of a process: its boot, its start in clock
// ticks since boot (/proc/PID/stat field 22) and its pid. The start is kept
// in ticks, the unit both BPF (task start_boottime / bpf.StartTickNs) and
// /proc give exactly, so the two produce the same string.
func ExecID(bootID string, startTicks uint64, pid uint32) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s:%d:%d", bootID, startTicks, pid))
}

// Ticks converts a start in ns since boot, as the process table and events
// hold it, to the clock ticks /proc reports.
func Ticks(startNs uint64) uint64 { return startNs / bpf.StartTickNs }

// BootID reads the kernel's boot ID.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// A Proc is what /proc says about a process.
type Proc struct {
	PID        uint32
	PPID       uint32
	StartTicks uint64
	Binary     string
	Args       []string
	Cwd        string
	UID        uint32
}

// ReadProc reads pid from procRoot (normally /proc). Fields other than the
// stat ones are best effort: a process of another user namespace or one
// exiting may hide them.
func ReadProc(procRoot string, pid uint32) (Proc, error) {
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	end := strings.LastIndexByte(string(stat), ')')
	if end < 0 || end+2 > len(stat) {
		return Proc{}, fmt.Errorf("read process %d: malformed stat %q", pid, stat)
	}
	fields := strings.Fields(string(stat[end+2:]))
	if len(fields) < 20 {
		return Proc{}, fmt.Errorf("read process %d: stat has %d fields after the name", pid, len(fields))
	}
	ppid, err1 := strconv.ParseUint(fields[1], 10, 32)
	start, err2 := strconv.ParseUint(fields[19], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return Proc{}, fmt.Errorf("read process %d: stat: %w", pid, err)
	}
	p := Proc{PID: pid, PPID: uint32(ppid), StartTicks: start}
	p.Binary, _ = os.Readlink(filepath.Join(dir, "exe"))
	p.Cwd, _ = os.Readlink(filepath.Join(dir, "cwd"))
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.Args = splitArgs(cmdline[:min(len(cmdline), MaxArgLen)])
	}
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		for line := range strings.Lines(string(status)) {
			if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					uid, _ := strconv.ParseUint(f[0], 10, 32)
					p.UID = uint32(uid)
				}
				break
			}
		}
	}
	return p, nil
}

// splitArgs splits NUL-separated argv, keeping at most MaxArgs elements.
func splitArgs(b []byte) []string { return splitNUL(b, MaxArgs) }

// splitNUL splits a NUL-separated list, keeping at most n elements.
func splitNUL(b []byte, n int) []string {
	s := strings.TrimSuffix(string(b), "\x00")
	if s == "" {
		return nil
	}
	list := strings.Split(s, "\x00")
	return list[:min(len(list), n)]
}

// ReadEnviron reads pid's environment from procRoot, cut like the
// kernel's capture: its first MaxEnvLen bytes, MaxEnv variables.
func ReadEnviron(procRoot string, pid uint32) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "environ"))
	if err != nil {
		return nil, fmt.Errorf("read environment of process %d: %w", pid, err)
	}
	return splitNUL(b[:min(len(b), MaxEnvLen)], MaxEnv), nil
}

// A Table is the pinned process table (bpf.Enforcer).
type Table interface {
	Process(pid uint32) (bpf.Process, bool, error)
}

// A Walker describes processes and their ancestors.
type Walker struct {
	Table    Table
	ProcRoot string // normally /proc
	BootID   string
	// InContainer says whether a process /proc knows belongs to the
	// container of the registered cgroup (that cgroup or one below); the
	// walk stops above the container's first process.
	InContainer func(pid uint32, cgroupID uint64) bool
	// CaptureEnv reads the environment of processes found in /proc (the
	// table's come from the kernel's capture).
	CaptureEnv bool
}

// A Chain is a process and its ancestors as an event shows them.
type Chain struct {
	Self       api.Process
	Ancestors  []api.Process // parent first
	Incomplete bool
	// Tracked are the table entries the chain was read from, for the
	// caller to drop those of exited processes.
	Tracked []bpf.Process
}

// A step is one process found on the way up, from the table or /proc.
type step struct {
	entry      *bpf.Process // nil: from /proc
	proc       api.Process
	ppid       uint32
	parentTick uint64 // 0: unknown (a /proc step)
	root       bool   // the container's first process
}

func (w *Walker) fromTable(p bpf.Process) step {
	args := p.Args[:min(len(p.Args), MaxArgs)]
	return step{
		entry: &p,
		proc: api.Process{
			Binary:       p.Binary,
			PID:          p.PID,
			ExecID:       ExecID(w.BootID, Ticks(p.StartNs), p.PID),
			ParentExecID: ExecID(w.BootID, Ticks(p.ParentStartNs), p.PPID),
			Args:         args,
			Cwd:          p.Cwd,
			UID:          p.UID,
			Env:          p.Env[:min(len(p.Env), MaxEnv)],
		},
		ppid:       p.PPID,
		parentTick: Ticks(p.ParentStartNs),
		root:       p.ContainerRoot,
	}
}

func (w *Walker) fromProc(p Proc) step {
	s := step{
		proc: api.Process{Binary: p.Binary, PID: p.PID, ExecID: ExecID(w.BootID, p.StartTicks, p.PID), Args: p.Args, Cwd: p.Cwd, UID: p.UID},
		ppid: p.PPID,
	}
	if w.CaptureEnv {
		// Best effort, like the other /proc fields.
		s.proc.Env, _ = ReadEnviron(w.ProcRoot, p.PID)
	}
	if parent, err := ReadProc(w.ProcRoot, p.PPID); err == nil {
		s.proc.ParentExecID = ExecID(w.BootID, parent.StartTicks, p.PPID)
		s.parentTick = parent.StartTicks
	}
	return s
}

// find looks pid up as the process that started at startTicks: in the
// table, else in /proc. ok is false when neither has it (gone, or the pid
// was reused).
func (w *Walker) find(pid uint32, startTicks uint64) (step, bool) {
	if p, ok, err := w.Table.Process(pid); err == nil && ok && Ticks(p.StartNs) == startTicks {
		return w.fromTable(p), true
	}
	p, err := ReadProc(w.ProcRoot, pid)
	if err != nil || p.StartTicks != startTicks {
		return step{}, false
	}
	return w.fromProc(p), true
}

// Describe names the process pid that started at startNs (ns since boot)
// and its ancestors up to the first process of the container of the
// registered cgroup. When neither the table nor /proc knows it, Self is
// fallback and the chain is incomplete. A chain is incomplete where a
// parent is gone or was never seen; it is never silently shortened.
func (w *Walker) Describe(pid uint32, startNs, cgroupID uint64, fallback api.Process) Chain {
	cur, ok := w.find(pid, Ticks(startNs))
	if !ok {
		fallback.ExecID = ExecID(w.BootID, Ticks(startNs), pid)
		return Chain{Self: fallback, Incomplete: true}
	}
	c := Chain{Self: cur.proc}
	track := func(s step) {
		if s.entry != nil {
			c.Tracked = append(c.Tracked, *s.entry)
		}
	}
	track(cur)
	for range MaxDepth {
		// The container's first process: marked so in the table, or, from
		// /proc, with its parent outside the container.
		if cur.root || cur.ppid == 0 || (cur.entry == nil && !w.InContainer(cur.ppid, cgroupID)) {
			return c
		}
		if cur.parentTick == 0 {
			break
		}
		parent, ok := w.find(cur.ppid, cur.parentTick)
		if !ok {
			break
		}
		if parent.entry == nil && !w.InContainer(parent.proc.PID, cgroupID) {
			return c
		}
		track(parent)
		c.Ancestors = append(c.Ancestors, parent.proc)
		cur = parent
	}
	c.Incomplete = true
	return c
}
