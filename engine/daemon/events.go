package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
)

// StreamEvents writes every kernel event as one JSON line until ctx is done.
// Events produced while no engine ran wait in the pinned ring buffer and
// come out first.
func (e *Engine) StreamEvents(ctx context.Context) error {
	if e.opts.Events == nil {
		return nil
	}
	rd, err := e.enforcer.Events()
	if err != nil {
		return fmt.Errorf("stream events: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	stale, err := e.enforcer.ExitedKept()
	if err != nil {
		e.log.Warn("exited processes kept by an earlier engine stay until evicted", "err", err)
	}
	for {
		if stale != nil && rd.Pending() == 0 {
			e.releaseStale(stale)
			stale = nil
		}
		ev, err := rd.Read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("stream events: %w", err)
		}
		out := e.describe(ev)
		e.writeEvent(&out)
	}
}

// releaseStale lets go of the exited processes' entries an engine that
// died between reading their events and describing them left kept: the
// ring buffer is drained, so no event still to come was kept for them
// before this engine started.
func (e *Engine) releaseStale(stale map[uint32]uint64) {
	for pid, start := range stale {
		if err := e.enforcer.Release(pid, start, true); err != nil {
			e.log.Warn("release a process an earlier engine left kept", "pid", pid, "err", err)
		}
	}
}

// describe joins a kernel event with the container and policy it concerns.
func (e *Engine) describe(ev bpf.Event) api.Event {
	out := api.Event{Schema: api.EventSchema, Time: ev.Time, Action: ev.Action, PID: ev.TGID, Comm: ev.Comm, CgroupID: ev.CgroupID}
	out.Verdict, out.Mode = verdictOf(ev)
	if ev.Filename != "" {
		out.Binary = ev.Filename
	}
	switch {
	case ev.Unresolved:
		out.Reason = api.ReasonUnresolved
	case ev.NotAllowed:
		out.Reason = api.ReasonNotAllowed
	}
	if ev.Addr.IsValid() {
		out.Destination = netip.AddrPortFrom(ev.Addr, ev.Port).String()
		out.Protocol = protoName(ev.Proto)
	}
	e.describeProcess(ev, &out)
	e.mu.Lock()
	defer e.mu.Unlock()
	out.Container = e.containerOfLocked(ev.CgroupID)
	out.Policy, out.Rule = e.ruleLocked(ev.RuleID)
	return out
}

func (e *Engine) containerOfLocked(cgroupID uint64) *api.EventContainer {
	if ids := e.reg.InCgroup(cgroupID); len(ids) > 0 {
		c, _ := e.reg.Get(ids[0])
		return eventContainer(c)
	}
	if o, ok := e.orphans[cgroupID]; ok {
		return &api.EventContainer{ID: o.ID}
	}
	return e.gone.byCgroup[cgroupID]
}

func eventContainer(c api.Container) *api.EventContainer {
	return &api.EventContainer{ID: c.ID, Namespace: c.Namespace, Pod: c.Pod, PodUID: c.PodUID, Name: c.Name, Image: c.Image, Labels: c.Labels}
}

// keepGone is how many unregistered containers events can still name.
const keepGone = 1024

// goneContainers remembers the last keepGone unregistered containers by
// cgroup. The kernel queues an event before the engine reads it: a
// container killed by a denial is often unregistered (its runtime's
// poststop) by the time its event is described, which must still name it.
type goneContainers struct {
	byCgroup map[uint64]*api.EventContainer
	order    []uint64 // oldest first
}

func (g *goneContainers) add(c api.Container) {
	if g.byCgroup == nil {
		g.byCgroup = map[uint64]*api.EventContainer{}
	}
	if _, ok := g.byCgroup[c.CgroupID]; !ok {
		g.order = append(g.order, c.CgroupID)
	}
	g.byCgroup[c.CgroupID] = eventContainer(c)
	if len(g.order) > keepGone {
		delete(g.byCgroup, g.order[0])
		g.order = g.order[1:]
	}
}

func (e *Engine) ruleLocked(ruleID uint32) (policy, rule string) {
	if info, ok := e.policies.Rule(ruleID); ok {
		return info.Policy, info.Describe()
	}
	return "", ""
}

func protoName(p uint8) string {
	switch p {
	case bpf.ProtoTCP:
		return "tcp"
	case bpf.ProtoUDP:
		return "udp"
	case bpf.ProtoAny:
		return ""
	}
	return strconv.Itoa(int(p))
}
