package daemon

import (
	"context"
	"encoding/json"
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
	for {
		ev, err := rd.Read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return fmt.Errorf("stream events: %w", err)
		}
		e.writeEvent(e.describe(ev))
	}
}

// writeEvent writes one JSON line; event lines and summaries come from two
// goroutines and must not interleave.
func (e *Engine) writeEvent(v any) error {
	if e.opts.Events == nil {
		return nil
	}
	line, err := json.Marshal(v)
	if err != nil {
		e.log.Error("encode event", "err", err)
		return fmt.Errorf("encode event: %w", err)
	}
	e.eventsMu.Lock()
	defer e.eventsMu.Unlock()
	if _, err := e.opts.Events.Write(append(line, '\n')); err != nil {
		e.log.Error("write event", "err", err)
		return fmt.Errorf("write event: %w", err)
	}
	return nil
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
		return &api.EventContainer{ID: c.ID, Namespace: c.Namespace, Pod: c.Pod, PodUID: c.PodUID, Name: c.Name, Image: c.Image, Labels: c.Labels}
	}
	if o, ok := e.orphans[cgroupID]; ok {
		return &api.EventContainer{ID: o.ID}
	}
	return nil
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
