package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// process.flags (PROC_* in process.h).
const (
	procExeced        = 1 << 0
	procExited        = 1 << 2 // kept past its exit for an event (process_kept)
	procArgsCut       = 1 << 3
	procContainerRoot = 1 << 4
)

// StartTickNs is one clock tick of /proc/PID/stat's start time (USER_HZ
// is 100 on every Linux ABI holdfast runs on): StartNs / StartTickNs is
// what /proc reports for the same process.
const StartTickNs = 10_000_000

// A Process is one entry of the pinned process table: a process of a
// registered container as the programs saw it fork and exec.
type Process struct {
	PID           uint32
	PPID          uint32 // real parent's tgid
	StartNs       uint64 // the leader's start, ns since boot (task start_boottime)
	ParentStartNs uint64
	CgroupID      uint64 // the registered cgroup it belongs to
	UID           uint32
	Binary        string   // the path execve was given
	Args          []string // argv, cut to 255 bytes (ArgsCut)
	ArgsCut       bool
	Cwd           string // the working directory's name, without its parents
	// Execed: Binary and Args are its own exec's; else it was forked and
	// runs its parent's image.
	Execed bool
	Exited bool
	// ContainerRoot: its parent is outside its container, so its
	// ancestors in the container end here.
	ContainerRoot bool
	// Env is the environment its exec left (NUL-separated KEY=value
	// strings, cut to 1023 bytes: EnvCut), filled only while environment
	// capture is on (SetEnvCapture).
	Env    []string
	EnvCut bool
}

// Process looks up pid in the process table; ok is false when it is not
// tracked (started before tracking, evicted, or gone).
func (e *Enforcer) Process(pid uint32) (p Process, ok bool, err error) {
	var raw holdfastProcess
	if err := e.maps.Processes.Lookup(pid, &raw); errors.Is(err, ebpf.ErrKeyNotExist) {
		return Process{}, false, nil
	} else if err != nil {
		return Process{}, false, fmt.Errorf("look up process %d in %s: %w", pid, holdfastMapProcesses, err)
	}
	p = decodeProcess(&raw)
	if err := e.processEnv(&p); err != nil {
		return Process{}, false, err
	}
	return p, true, nil
}

func decodeProcess(raw *holdfastProcess) Process {
	p := Process{
		PID:           raw.Pid,
		PPID:          raw.Ppid,
		StartNs:       raw.StartNs,
		ParentStartNs: raw.ParentStartNs,
		CgroupID:      raw.CgroupId,
		UID:           raw.Uid,
		Binary:        cString(raw.Binary[:]),
		Cwd:           cString(raw.Cwd[:]),
		ArgsCut:       raw.Flags&procArgsCut != 0,
		Execed:        raw.Flags&procExeced != 0,
		Exited:        raw.Flags&procExited != 0,
		ContainerRoot: raw.Flags&procContainerRoot != 0,
	}
	p.Args = decodeNULList(raw.Args[:], int(raw.ArgsLen))
	return p
}

// Release says an event naming process pid (started at startNs) has been
// described. Its entry stays past its exit only while an event about it is
// to come: an exited process's entry goes now, unless its cgroup has exec
// events and this was not its process_exit event; a live one stops being
// kept unless a process_exit event will come. Another process that took
// the pid since is left alone.
func (e *Enforcer) Release(pid uint32, startNs uint64, exitEvent bool) error {
	var kept uint64
	if err := e.maps.ProcessKept.Lookup(pid, &kept); errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("release process %d: look up %s: %w", pid, holdfastMapProcessKept, err)
	}
	if kept != startNs {
		return nil
	}
	p, ok, err := e.Process(pid)
	if err != nil {
		return fmt.Errorf("release process %d: %w", pid, err)
	}
	if ok && p.StartNs == startNs {
		var rule holdfastCgroupRule
		eventsOn := e.maps.CgroupRules.Lookup(p.CgroupID, &rule) == nil && rule.Flags&flagExecEvent != 0
		if eventsOn && !exitEvent {
			return nil // its process_exit event follows
		}
		if p.Exited {
			if err := e.maps.Processes.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("release exited process %d: %w", pid, err)
			}
			if err := e.dropEnv(pid); err != nil {
				return fmt.Errorf("release exited process: %w", err)
			}
		}
	}
	if err := e.maps.ProcessKept.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("release process %d: delete from %s: %w", pid, holdfastMapProcessKept, err)
	}
	return nil
}

// ExitedKept lists the exited processes whose entries are kept for an event
// (pid to start time). Read before the first event of an engine's stream,
// the entries that stay kept once the ring buffer is drained were kept for
// events a previous engine read but did not live to release.
func (e *Enforcer) ExitedKept() (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	err := eachEntry(e.maps.ProcessKept, func(pid uint32, start uint64) {
		if p, ok, err := e.Process(pid); err == nil && ok && p.Exited && p.StartNs == start {
			out[pid] = start
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list exited processes kept in %s: %w", holdfastMapProcessKept, err)
	}
	return out, nil
}
