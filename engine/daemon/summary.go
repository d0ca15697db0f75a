package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/registry"
)

// ActionUntracked names summaries of denials the kernel could not count per
// container because its denials map was full.
const ActionUntracked = "denials-untracked"

// Summary reports the denials of one container, rule and action since the
// previous summary, from the kernel's counters: exact however many of them
// the kernel's rate limit kept out of the event stream.
type Summary struct {
	// Schema, Seq and BootID number the line as they do events.
	Schema int       `json:"schema"`
	Seq    uint64    `json:"seq"`
	BootID string    `json:"bootId,omitempty"`
	Time   time.Time `json:"time"`
	// Summary is the action summarised. Summaries have no "action" field,
	// so consumers that count events by action do not count them.
	Summary   string              `json:"summary"`
	CgroupID  uint64              `json:"cgroupId,omitempty"`
	Container *api.EventContainer `json:"container,omitempty"`
	Policy    string              `json:"policy,omitempty"`
	Rule      string              `json:"rule,omitempty"`
	// Verdict is api.VerdictDeny, or api.VerdictWouldDeny for decisions of
	// audit-mode rules, which are counted apart.
	Verdict string `json:"verdict,omitempty"`
	// Count denials since the previous summary, of which Events were
	// written as events, Lost found the ring buffer full and Suppressed
	// were held back by the rate limit.
	Count      uint64 `json:"count"`
	Events     uint64 `json:"events"`
	Lost       uint64 `json:"lost"`
	Suppressed uint64 `json:"suppressed"`
	// Total is the kernel's count since its counter was created, so the
	// latest summary is exact even when rotation dropped older ones.
	Total uint64 `json:"total"`
}

// reported is what earlier summaries covered, by counter; it is kept in the
// state dir so a restarted engine reports only what is new.
type reported map[string]bpf.DenialCount

func denialName(k bpf.DenialKey) string {
	if k.Audited {
		return fmt.Sprintf("%d/%d/%s/%s", k.CgroupID, k.RuleID, k.Action, api.VerdictWouldDeny)
	}
	return fmt.Sprintf("%d/%d/%s", k.CgroupID, k.RuleID, k.Action)
}

// ReportedFile in the state dir records what denial summaries covered.
const ReportedFile = "denials-reported.json"

func (e *Engine) loadReported() reported {
	r := reported{}
	data, err := os.ReadFile(filepath.Join(e.opts.StateDir, ReportedFile))
	if err == nil {
		if err := json.Unmarshal(data, &r); err != nil {
			e.log.Warn("denial summary baseline unreadable; counters are reported from their start", "err", err)
			r = reported{}
		}
	}
	return r
}

// Maintain runs the periodic work until ctx is done: denial summaries and
// the removal of orphaned entries whose cgroup is gone. A last summary is
// written on the way out.
func (e *Engine) Maintain(ctx context.Context) error {
	interval := e.opts.SummaryInterval
	if interval <= 0 {
		interval = bpf.EventWindow
	}
	done := e.loadReported()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := e.summarize(done); err != nil {
				e.log.Error("denial summaries", "err", err)
			}
			return nil
		case <-t.C:
		}
		if err := e.summarize(done); err != nil {
			e.log.Error("denial summaries", "err", err)
		}
		if err := e.sweepOrphans(); err != nil {
			e.log.Error("remove orphaned entries", "err", err)
		}
	}
}

// summarize writes a summary for each counter that moved since done and
// records the new baseline.
func (e *Engine) summarize(done reported) error {
	// Cgroups first: a cgroup not enforced now denies nothing after it, so
	// the counts read next are final for it and its counters can go.
	cgroups, err := e.enforcer.Cgroups()
	if err != nil {
		return err
	}
	denials, err := e.enforcer.Denials()
	if err != nil {
		return err
	}
	counters, err := e.enforcer.Counters()
	if err != nil {
		return err
	}
	now := time.Now()
	type pending struct {
		name string
		c    bpf.DenialCount
		s    Summary
	}
	var out []pending
	e.mu.Lock()
	for k, c := range denials {
		name := denialName(k)
		prev := done[name]
		if c.Total < prev.Total { // the counter was recreated
			prev = bpf.DenialCount{}
		}
		if c.Total == prev.Total {
			continue
		}
		s := Summary{Time: now, Summary: k.Action, CgroupID: k.CgroupID,
			Container: e.containerOfLocked(k.CgroupID),
			Count:     c.Total - prev.Total, Events: c.Sent - prev.Sent, Lost: c.Lost - prev.Lost, Total: c.Total}
		s.Policy, s.Rule = e.ruleLocked(k.RuleID)
		s.Verdict = api.VerdictDeny
		if k.Audited {
			s.Verdict = api.VerdictWouldDeny
		}
		s.Suppressed = s.Count - s.Events - s.Lost
		out = append(out, pending{name, c, s})
	}
	e.mu.Unlock()
	if prev := done[ActionUntracked]; counters.DenialsUntracked > prev.Total {
		n := counters.DenialsUntracked - prev.Total
		out = append(out, pending{ActionUntracked, bpf.DenialCount{Total: counters.DenialsUntracked},
			Summary{Time: now, Summary: ActionUntracked, Count: n, Suppressed: n, Total: counters.DenialsUntracked}})
	}
	// The baseline moves only past what was written: a summary that could
	// not be written (a full disk) is covered by the next one.
	changed, failed := false, false
	for _, p := range out {
		if err := e.writeEvent(&p.s); err != nil {
			failed = true
			continue
		}
		done[p.name] = p.c
		changed = true
	}
	if failed {
		return e.saveReported(done, changed)
	}
	gone := map[uint64]bool{}
	for k := range denials {
		if _, enforced := cgroups[k.CgroupID]; !enforced {
			gone[k.CgroupID] = true
		}
	}
	if len(gone) > 0 {
		if err := e.retireDenials(denials, gone); err != nil {
			return err
		}
		for k := range denials {
			if gone[k.CgroupID] {
				delete(done, denialName(k))
			}
		}
		changed = true
	}
	return e.saveReported(done, changed)
}

func (e *Engine) saveReported(done reported, changed bool) error {
	if !changed {
		return nil
	}
	data, err := json.Marshal(done)
	if err != nil {
		return fmt.Errorf("encode denial summary baseline: %w", err)
	}
	if err := linux.WriteFileAtomic(filepath.Join(e.opts.StateDir, ReportedFile), data, registry.StatePerm); err != nil {
		return fmt.Errorf("save denial summary baseline: %w", err)
	}
	return nil
}
