package api

import "time"

// EventSchema is the version of the event JSON below. Fields are only ever
// added within a version; a change that removes or retypes a field bumps it.
const EventSchema = 1

// Verdicts of an event.
const (
	VerdictDeny      = "deny"      // the operation was refused or its process killed
	VerdictWouldDeny = "wouldDeny" // audit mode: a rule matched, the operation went ahead
	VerdictAllow     = "allow"     // informational events (process_exec, process_exit)
)

// Modes a policy runs in.
const (
	ModeEnforce = "enforce"
	ModeAudit   = "audit"
)

// Event is one line of the events stream: a decision or a process event,
// joined with the container and policy it concerns.
type Event struct {
	// Schema is EventSchema; Seq counts lines of this engine's stream since
	// its state dir was made, and BootID names the boot the kernel
	// timestamps belong to, so a consumer can tell a gap from a restart.
	Schema      int             `json:"schema"`
	Seq         uint64          `json:"seq"`
	BootID      string          `json:"bootId,omitempty"`
	Time        time.Time       `json:"time"`
	Action      string          `json:"action"`
	Verdict     string          `json:"verdict,omitempty"`
	Mode        string          `json:"mode,omitempty"`
	PID         uint32          `json:"pid"`
	Comm        string          `json:"comm,omitempty"`
	Binary      string          `json:"binary,omitempty"`
	Destination string          `json:"destination,omitempty"`
	Protocol    string          `json:"protocol,omitempty"`
	CgroupID    uint64          `json:"cgroupId"`
	Container   *EventContainer `json:"container,omitempty"`
	Policy      string          `json:"policy,omitempty"`
	Rule        string          `json:"rule,omitempty"`
	// Reason says why an exec was refused without a rule (Rule is empty):
	// ReasonNotAllowed or ReasonUnresolved.
	Reason string `json:"reason,omitempty"`
	// Process is the process that acted; Ancestors its parent, grandparent
	// and so on up to the container's first process. AncestorsIncomplete
	// says the chain is broken (a process nothing tracked), never shortened.
	Process             *Process  `json:"process,omitempty"`
	Ancestors           []Process `json:"ancestors,omitempty"`
	AncestorsIncomplete bool      `json:"ancestorsIncomplete,omitempty"`
	// RedactedBy names the redaction filters that changed this event.
	RedactedBy []string `json:"redactedBy,omitempty"`
}

// Reasons of refusals that no rule made.
const (
	ReasonNotAllowed = "not-allowed" // not on the container's exec allow list
	ReasonUnresolved = "unresolved"  // the file's path was too deep to resolve
)

// Process is one process of a container as events show it. ExecID is
// stable for the life of the exec: boot ID, start time and pid, the same
// whether BPF saw the exec or the engine recovered it from /proc.
type Process struct {
	Binary       string   `json:"binary,omitempty"`
	PID          uint32   `json:"pid"`
	ExecID       string   `json:"execId,omitempty"`
	ParentExecID string   `json:"parentExecId,omitempty"`
	Args         []string `json:"args,omitempty"`
	Cwd          string   `json:"cwd,omitempty"`
	UID          uint32   `json:"uid"`
	// Env is captured only when environment capture is on.
	Env []string `json:"env,omitempty"`
}

// EventContainer is the identity of the container an event happened in.
type EventContainer struct {
	ID        string            `json:"id"`
	Namespace string            `json:"namespace,omitempty"`
	Pod       string            `json:"pod,omitempty"`
	PodUID    string            `json:"podUid,omitempty"`
	Name      string            `json:"name,omitempty"`
	Image     string            `json:"image,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Actions of PolicyEvent lines.
const (
	ActionPolicyApplied = "policy-applied" // a changed policy directory is in force
	ActionPolicyRefused = "policy-refused" // a changed policy directory was refused; the last good set stays
)

// PolicyEvent is the events-stream line about a change of the policy
// directory, applied or refused.
type PolicyEvent struct {
	Schema   int               `json:"schema"`
	Time     time.Time         `json:"time"`
	Action   string            `json:"action"`
	Dir      string            `json:"dir"`
	Policies []string          `json:"policies,omitempty"` // in force after the event
	Errors   []PolicyFileError `json:"errors,omitempty"`
}
