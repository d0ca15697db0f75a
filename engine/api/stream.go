package api

import (
	"path"
	"slices"
)

// OpSubscribe turns a connection into an event stream: the engine answers
// with an empty Response, then writes one JSON line per event (the lines
// of the events file) until the client closes the connection.
const OpSubscribe = "subscribe"

// Lost is the stream line that tells a subscriber how many lines the
// engine dropped for it because it read too slowly.
type Lost struct {
	LinesLost uint64 `json:"linesLost"`
}

// EventMeta is what a subscription filters events on.
type EventMeta struct {
	Namespace string
	Pod       string
	// ContainerID and ContainerName: --container matches either.
	ContainerID   string
	ContainerName string
	Policy        string
	// Type is an event's action ("exec-killed") or, for a summary, the
	// action it summarises.
	Type    string
	Verdict string
}

// EventFilter selects events; every field given must match, and a list
// matches when any of its entries does.
type EventFilter struct {
	Namespace string   `json:"namespace,omitempty"`
	Pod       string   `json:"pod,omitempty"`
	Container string   `json:"container,omitempty"`
	Policy    string   `json:"policy,omitempty"`
	Types     []string `json:"types,omitempty"`
	Verdicts  []string `json:"verdicts,omitempty"`
}

// Match says whether an event with meta m passes the filter.
func (f EventFilter) Match(m EventMeta) bool {
	switch {
	case f.Namespace != "" && f.Namespace != m.Namespace,
		f.Pod != "" && f.Pod != m.Pod,
		f.Container != "" && f.Container != m.ContainerName && f.Container != m.ContainerID,
		f.Policy != "" && f.Policy != m.Policy,
		len(f.Types) > 0 && !slices.Contains(f.Types, m.Type),
		len(f.Verdicts) > 0 && !slices.Contains(f.Verdicts, m.Verdict):
		return false
	}
	return true
}

// Stamp numbers an event line.
func (e *Event) Stamp(seq uint64, bootID string) {
	e.Schema, e.Seq, e.BootID = EventSchema, seq, bootID
}

// Meta is what filters see of the event.
func (e *Event) Meta() EventMeta {
	m := EventMeta{Policy: e.Policy, Type: e.Action, Verdict: e.Verdict}
	if c := e.Container; c != nil {
		m.Namespace, m.Pod, m.ContainerID, m.ContainerName = c.Namespace, c.Pod, c.ID, c.Name
	}
	return m
}

// Name is how a process shows in an ancestry chain: its binary's base
// name, or the comm when the binary is unknown.
func (p Process) Name() string {
	if p.Binary != "" {
		return path.Base(p.Binary)
	}
	if len(p.Args) > 0 {
		return path.Base(p.Args[0])
	}
	return "?"
}

// Stamp numbers a policy event line.
func (e *PolicyEvent) Stamp(seq uint64, bootID string) {
	e.Schema, e.Seq, e.BootID = EventSchema, seq, bootID
}

// Meta is what filters see of a policy event: its action; it concerns no
// container.
func (e *PolicyEvent) Meta() EventMeta { return EventMeta{Type: e.Action} }
