package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/metrics"
)

// Hooks, as decision metrics label them.
var hookOf = map[string]string{
	bpf.ActionExecKilled: "exec", bpf.ActionExecDenied: "exec",
	bpf.ActionMmapKilled: "mmap", bpf.ActionMmapDenied: "mmap",
	bpf.ActionConnectRefused: "connect", bpf.ActionSendmsgRefused: "connect",
	bpf.ActionBindRefused:   "bind",
	bpf.ActionSocketRefused: "socket", bpf.ActionSocketKilled: "socket",
	bpf.ActionPacketDropped: "egress",
	bpf.ActionMoveKilled:    "move",
}

var _ metrics.Source = (*Engine)(nil)

// decisionKeyLocked labels one kernel denial counter.
func (e *Engine) decisionKeyLocked(k bpf.DenialKey) decisionKey {
	hook, ok := hookOf[k.Action]
	if !ok {
		hook = k.Action
	}
	policy, _ := e.ruleLocked(k.RuleID)
	if k.Audited {
		return decisionKey{hook: hook, verdict: api.VerdictWouldDeny, policy: policy, mode: api.ModeAudit}
	}
	return decisionKey{hook: hook, verdict: api.VerdictDeny, policy: policy, mode: api.ModeEnforce}
}

// retireDenials deletes the denial counters of cgroups no longer enforced,
// first adding their final counts to the totals metrics report, so
// decision counters never go down. Scrapes wait for both steps.
func (e *Engine) retireDenials(denials map[bpf.DenialKey]bpf.DenialCount, gone map[uint64]bool) error {
	e.obs.denialsMu.Lock()
	defer e.obs.denialsMu.Unlock()
	if err := e.enforcer.DeleteDenials(slices.Collect(maps.Keys(gone))...); err != nil {
		return err
	}
	e.mu.Lock()
	retired := map[decisionKey]uint64{}
	for k, c := range denials {
		if gone[k.CgroupID] {
			retired[e.decisionKeyLocked(k)] += c.Total
		}
	}
	e.mu.Unlock()
	e.obs.mu.Lock()
	for k, n := range retired {
		e.obs.retired[k] += n
	}
	e.obs.mu.Unlock()
	return nil
}

// Metrics implements metrics.Source.
func (e *Engine) Metrics(ctx context.Context) (*metrics.Snapshot, error) {
	usage, err := e.enforcer.MapUsage()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	n, err := e.enforcer.Counters()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &metrics.Snapshot{RingBufferLost: n.EventsLost, DenialsUntracked: n.DenialsUntracked}
	for _, u := range usage {
		s.Maps = append(s.Maps, metrics.Map{Name: u.Name, Entries: u.Entries, Capacity: u.Capacity})
	}
	decisions := map[decisionKey]uint64{
		{hook: "exec", verdict: api.VerdictAllow}:    n.ExecChecked - min(n.ExecDenied, n.ExecChecked),
		{hook: "connect", verdict: api.VerdictAllow}: n.ConnectChecked - min(n.ConnectRefused, n.ConnectChecked),
	}
	e.obs.denialsMu.Lock()
	denials, err := e.enforcer.Denials()
	if err != nil {
		e.obs.denialsMu.Unlock()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	e.mu.Lock()
	s.Containers = e.reg.Len()
	s.PolicyLoaded = e.policyErr == nil
	s.Policies = len(e.policies.Policies())
	for k, c := range denials {
		decisions[e.decisionKeyLocked(k)] += c.Total
	}
	e.mu.Unlock()
	e.obs.mu.Lock()
	for k, c := range e.obs.retired {
		decisions[k] += c
	}
	e.obs.denialsMu.Unlock()
	for k, c := range e.obs.regs {
		s.Registrations = append(s.Registrations, metrics.Registration{Source: k.source, Result: k.result, Count: c})
	}
	s.PolicyGeneration = e.obs.generation
	s.RedactionLoaded = e.obs.filterErr == nil
	s.RedactionFilters = len(e.obs.filters.Filters())
	e.obs.mu.Unlock()
	for k, c := range decisions {
		s.Decisions = append(s.Decisions, metrics.Decision{Hook: k.hook, Verdict: k.verdict, Policy: k.policy, Mode: k.mode, Count: c})
	}
	st := e.obs.stream.Stats()
	s.EventLines, s.EventWriteErrors, s.SubscriberDropped, s.Subscribers = st.Lines, st.SinkErrors, st.Dropped, st.Subscribers
	return s, nil
}

// Healthy implements metrics.Source: the engine can read its kernel state.
func (e *Engine) Healthy(ctx context.Context) error {
	if _, err := e.enforcer.Counters(); err != nil {
		return fmt.Errorf("read kernel counters: %w", err)
	}
	return nil
}
