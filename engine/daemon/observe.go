package daemon

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/eventlog"
	"github.com/holdfast-dev/holdfast/engine/eventstream"
	"github.com/holdfast-dev/holdfast/engine/redact"
)

// State-dir entries of the event pipeline.
const (
	// SequenceFile records the ceiling of the event sequence numbers.
	SequenceFile = "events-seq"
	// RedactionSnapshot holds the files of the last good redaction filters.
	RedactionSnapshot = "redaction"
)

// ObserveOptions configure what happens to events after they are
// described: redaction, subscribers.
type ObserveOptions struct {
	// CaptureEnv lets processes' environments into events (redacted by
	// the filters' envKeys); off, they are dropped before any sink.
	CaptureEnv bool
	// SubscriberBuffer is the lines queued per `holdfast events`
	// subscriber before it loses some (default eventstream's).
	SubscriberBuffer int
}

// observation is the engine's event pipeline and the counts behind its
// metrics.
type observation struct {
	stream *eventstream.Stream

	// denialsMu orders a scrape's read of the kernel's denial counters
	// and retired totals against the retirement of counters.
	denialsMu sync.Mutex

	mu         sync.Mutex
	filters    *redact.Set
	filterErr  error
	generation uint64 // successful policy loads
	regs       map[registrationKey]uint64
	// retired are the final counts of denial counters deleted with their
	// cgroups, so decision totals never go down.
	retired map[decisionKey]uint64
}

type registrationKey struct{ source, result string }

type decisionKey struct{ hook, verdict, policy, mode string }

// Registration results, as metrics label them.
const (
	resultRegistered = "registered"
	resultFailed     = "failed"
)

func (e *Engine) startObserving() error {
	boot, err := eventstream.BootID()
	if err != nil {
		return err
	}
	seq, err := eventstream.OpenSequence(filepath.Join(e.opts.StateDir, SequenceFile), 0)
	if err != nil {
		e.log.Error("event numbering", "err", err)
	}
	e.obs = &observation{
		stream: eventstream.New(eventstream.Options{Sink: e.opts.Events, Sequence: seq, BootID: boot,
			SubscriberBuffer: e.opts.Observe.SubscriberBuffer, Log: e.log}),
		regs:    map[registrationKey]uint64{},
		retired: map[decisionKey]uint64{},
		filters: redact.Empty(),
	}
	if err := e.loadRedaction(); err != nil {
		prev, serr := redact.LoadDir(filepath.Join(e.opts.StateDir, RedactionSnapshot))
		if serr != nil {
			e.log.Error("redaction filters refused and no good set saved: masking every argument and environment value", "err", err)
			e.obs.filters = redact.FailClosed()
		} else {
			e.log.Error("redaction filters refused; using the last good set", "err", err)
			e.obs.filters = prev
		}
	}
	return nil
}

// loadRedaction reads the policy dir's redaction filters and, if they are
// valid, puts them in force and saves them; otherwise the set in force
// stays and the error is kept for status.
func (e *Engine) loadRedaction() error {
	set, err := redact.LoadDir(e.opts.PolicyDir)
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	if err != nil {
		e.obs.filterErr = fmt.Errorf("load redaction filters from %s: %w", e.opts.PolicyDir, err)
		return e.obs.filterErr
	}
	e.obs.filters, e.obs.filterErr = set, nil
	if err := snapshotRedaction(set, filepath.Join(e.opts.StateDir, RedactionSnapshot)); err != nil {
		e.log.Error("save redaction snapshot", "err", err)
	}
	return nil
}

// snapshotRedaction copies the files that hold set's filters into dir.
func snapshotRedaction(set *redact.Set, dir string) error {
	var files []string
	for _, f := range set.Filters() {
		files = append(files, f.File)
	}
	if err := snapshotFiles(files, dir); err != nil {
		return fmt.Errorf("redaction snapshot: %w", err)
	}
	return nil
}

// afterReload runs when a policy reload ends: a good policy load counts a
// generation, and the redaction filters are read again either way. A
// refusal of the filters is not the policies': status, metrics and the
// log report it, and the previous filters stay.
func (e *Engine) afterReload(policyErr error) {
	if policyErr == nil {
		e.obs.mu.Lock()
		e.obs.generation++
		e.obs.mu.Unlock()
	}
	e.refreshRedaction()
}

// refreshRedaction reads the redaction filters again (the policy dir
// changed without changing the policies).
func (e *Engine) refreshRedaction() {
	if err := e.loadRedaction(); err != nil {
		e.log.Error("redaction filters refused; the previous filters stay in force", "err", err)
	}
}

// writeEvent sends one line through the pipeline: a kernel event is
// redacted first; summaries and policy events go as they are.
func (e *Engine) writeEvent(rec eventstream.Record) error {
	if ev, ok := rec.(*api.Event); ok {
		if !e.opts.Observe.CaptureEnv {
			dropEnv(ev)
		}
		e.obs.mu.Lock()
		filters := e.obs.filters
		e.obs.mu.Unlock()
		filters.Apply(ev)
	}
	if err := e.obs.stream.Publish(rec); err != nil {
		e.log.Debug("publish event", "err", err)
		return err
	}
	return nil
}

func dropEnv(ev *api.Event) {
	if ev.Process != nil {
		ev.Process.Env = nil
	}
	for i := range ev.Ancestors {
		ev.Ancestors[i].Env = nil
	}
}

// SubscribeEvents implements api.EventSource.
func (e *Engine) SubscribeEvents(f api.EventFilter) (api.EventSubscription, error) {
	sub, err := e.obs.stream.Subscribe(f)
	if err != nil {
		return nil, err
	}
	return sub, nil
}

var _ api.EventSource = (*Engine)(nil)

// countRegistration counts one registration attempt by source and result.
// A registrar's offline registration (openOffline) has no metrics to count in.
func (e *Engine) countRegistration(source string, err error) {
	if e.obs == nil {
		return
	}
	result := resultRegistered
	if err != nil {
		result = resultFailed
	}
	e.obs.mu.Lock()
	e.obs.regs[registrationKey{source, result}]++
	e.obs.mu.Unlock()
}

// observeStatus adds the event pipeline's state to a status.
func (e *Engine) observeStatus(st *api.Status) {
	if f, ok := e.opts.Events.(*eventlog.File); ok {
		st.EventsFile = f.Path
	}
	st.EventSubscribers = e.obs.stream.Stats().Subscribers
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	for _, f := range e.obs.filters.Filters() {
		st.RedactionFilters = append(st.RedactionFilters, f.Name)
	}
	if e.obs.filterErr != nil {
		st.RedactionError = e.obs.filterErr.Error()
	}
	st.EnvCapture = envCaptureStatus(e.enforcer)
}

func envCaptureStatus(enf Enforcer) string {
	if enf == nil {
		return ""
	}
	on, err := enf.EnvCapture()
	switch {
	case err != nil:
		return "unknown: " + err.Error()
	case on:
		return "on"
	}
	return "off"
}

// Stamp numbers a summary line.
func (s *Summary) Stamp(seq uint64, bootID string) {
	s.Schema, s.Seq, s.BootID = api.EventSchema, seq, bootID
}

// Meta is what subscription filters see of a summary: its type is the
// action it summarises.
func (s *Summary) Meta() api.EventMeta {
	m := api.EventMeta{Policy: s.Policy, Type: s.Summary, Verdict: s.Verdict}
	if c := s.Container; c != nil {
		m.Namespace, m.Pod, m.ContainerID, m.ContainerName = c.Namespace, c.Pod, c.ID, c.Name
	}
	return m
}
