package daemon

import (
	"path/filepath"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/lineage"
)

func (e *Engine) newWalker() (*lineage.Walker, error) {
	boot, err := lineage.BootID()
	if err != nil {
		return nil, err
	}
	return &lineage.Walker{Table: e.enforcer, ProcRoot: "/proc", BootID: boot, InContainer: e.inContainer,
		CaptureEnv: e.opts.Observe.CaptureEnv}, nil
}

// inContainer says whether pid's cgroup is the registered cgroup or below
// it.
func (e *Engine) inContainer(pid uint32, cgroupID uint64) bool {
	dir, err := e.cgroups.DirOfPID(int(pid))
	if err != nil {
		return false
	}
	for ; len(dir) >= len(e.cgroups.Root); dir = filepath.Dir(dir) {
		if id, err := e.cgroupID(dir); err == nil && id == cgroupID {
			return true
		}
		if dir == e.cgroups.Root {
			break
		}
	}
	return false
}

// describeProcess fills the event's process, its ancestors and, for
// process events, the verdict; then releases the table entries the event
// kept past their processes' exit.
func (e *Engine) describeProcess(ev bpf.Event, out *api.Event) {
	if ev.Action == bpf.ActionProcessExec || ev.Action == bpf.ActionProcessExit {
		out.Verdict = api.VerdictAllow
	}
	if ev.StartNs == 0 {
		return // egress: no process
	}
	fallback := api.Process{Binary: ev.Filename, PID: ev.TGID}
	c := e.processes.Describe(ev.TGID, ev.StartNs, ev.CgroupID, fallback)
	out.Process = &c.Self
	out.Ancestors = c.Ancestors
	out.AncestorsIncomplete = c.Incomplete
	for i, p := range c.Tracked {
		exitEvent := i == 0 && ev.Action == bpf.ActionProcessExit
		if err := e.enforcer.Release(p.PID, p.StartNs, exitEvent); err != nil {
			e.log.Warn("release a process the event named", "pid", p.PID, "err", err)
		}
	}
}
