// Package api is the engine's local control protocol: the wire types, a
// client for registrars and the CLI, and a server that hands requests to the
// engine. Newline-delimited JSON requests and responses take turns on a
// Unix-socket connection, each bounded in size and time; a client keeps its
// connection for further calls, and a one-shot client simply closes it.
//
// Registrars (hook/, nri-plugin/), the CLI and the daemon import it; it and
// its subpackages import nothing of the daemon (engine/daemon, engine/policy,
// engine/registry, ...), only bpf/linux and each other.
package api

import (
	"encoding/json"
	"errors"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// Operations a request can carry.
const (
	OpRegister   = "register"
	OpUnregister = "unregister"
	OpSync       = "sync"
	OpList       = "list"
	OpStatus     = "status"
	OpReload     = "reload"
	OpExplain    = "explain"
	// OpHook hands the engine an OCI hook's input as the runtime gave it;
	// the engine registers (or, at poststop, unregisters) the container.
	OpHook = oneshot.Op
)

// DefaultSocket is where the engine listens on a node.
const DefaultSocket = oneshot.DefaultSocket

// MaxMessageSize bounds one request or response line.
const MaxMessageSize = oneshot.MaxMessageSize

// ErrNotFound is returned (wrapped) when an unregister names an unknown container.
var ErrNotFound = errors.New("container not registered")

// ErrCannotEnforce is returned (wrapped) when the engine answered but cannot
// put a container's policies in force (they do not compile, a map is full,
// the registry cannot be written). Registrars refuse such a container even
// when failing open: fail-open covers an engine that cannot be reached, not
// one that says the container would run unenforced.
var ErrCannotEnforce = errors.New("engine cannot enforce the container's policies")

// ErrRefused is wrapped by every error that is the engine's answer, as
// opposed to a failure to reach it (no socket, no reply before the deadline).
var ErrRefused = errors.New("engine refused")

// ErrUnsupported is returned (wrapped) when the engine does not know the
// operation: an engine older than its client, during an upgrade.
var ErrUnsupported = errors.New("operation not supported by this engine")

// Error codes of a Response, so clients can tell failures apart.
const (
	CodeNotFound      = oneshot.CodeNotFound
	CodeCannotEnforce = oneshot.CodeCannotEnforce
	CodeUnsupported   = "unsupported"
)

// unknownOpPrefix starts the error an engine gives for an operation it does
// not know.
const unknownOpPrefix = "unknown op "

// OrphanPrefix starts the ID under which status lists an orphaned cgroup
// entry ("orphan:<cgroupId>"); containers remove accepts it.
const OrphanPrefix = "orphan:"

// Container is one workload as a registrar sees it just before its first
// instruction runs. CgroupID is the cgroup v2 inode number; a registrar that
// knows only the path sets CgroupPath and the engine resolves it.
type Container struct {
	ID         string            `json:"id"`
	CgroupID   uint64            `json:"cgroupId,omitempty"`
	CgroupPath string            `json:"cgroupPath,omitempty"`
	Namespace  string            `json:"namespace,omitempty"`
	Pod        string            `json:"pod,omitempty"`
	PodUID     string            `json:"podUid,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Name       string            `json:"container,omitempty"`
	Image      string            `json:"image,omitempty"`
	// Source names the registrar ("oci-hook", "nri", "cli", "cri"); Sync
	// replaces only the registrations of its own source.
	Source string `json:"source,omitempty"`
	// Policies is filled in by the engine: the policies that select it.
	Policies []string `json:"policies,omitempty"`
	// Pid is a process of the container. The engine resolves exec rules in
	// its root: Rootfs, a path in Pid's mount namespace, while Pid has not
	// pivoted into the container's root yet (OCI create stages: the
	// bundle's root.path); Pid's own root when Rootfs is empty.
	Pid    int    `json:"pid,omitempty"`
	Rootfs string `json:"rootfs,omitempty"`
	// Entrypoint is the container process's argv (OCI process.args).
	Entrypoint []string `json:"entrypoint,omitempty"`
	// RootID is filled in by the engine: the identity of the container's
	// root directory, which tells its processes from ones that chrooted
	// elsewhere when rules are resolved again later.
	RootID string `json:"rootId,omitempty"`
	// RootMountNS is filled in with RootID where the kernel names mount
	// namespaces (NS_GET_MNTNS_ID): the namespace the root was resolved
	// in. A process that moved to a namespace of its own can mount decoys
	// over denied files there, so rules are not resolved again through it.
	RootMountNS uint64 `json:"rootMountNs,omitempty"`
	// RootNewestMount is filled in with RootID: the newest mount of
	// RootMountNS when the root was first opened, before the workload ran
	// (unique mount IDs only grow). A rule's file on a newer mount sits on
	// a mount the container made since, which may hide the file.
	RootNewestMount uint64 `json:"rootNewestMount,omitempty"`
	// Sandbox marks a pod's sandbox (infra) container; its Labels are the
	// pod's labels, which the pod's application containers take through
	// SandboxID.
	Sandbox bool `json:"sandbox,omitempty"`
	// SandboxID names the pod sandbox of an application container: the
	// engine takes the pod's identity and labels from the registered
	// sandbox, else from the CRI runtime (PodSandboxStatus).
	SandboxID string `json:"sandboxId,omitempty"`
	// PeerInContainer says the registrar itself runs in the container's
	// cgroup (an OCI createContainer hook): the engine checks the claimed
	// cgroup against the peer's own.
	PeerInContainer bool `json:"peerInContainer,omitempty"`
}

// Pod is a pod sandbox's identity as the CRI runtime reports it.
type Pod struct {
	ID        string            `json:"id"`
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name,omitempty"`
	UID       string            `json:"uid,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Explanation is what each exec rule of a container's policies means in
// that container's own root filesystem.
type Explanation struct {
	Container Container `json:"container"`
	// Root is where the rules were resolved, RootError why they could not be.
	Root      string `json:"root,omitempty"`
	RootError string `json:"rootError,omitempty"`
	// Entrypoint is the resolved entrypoint, when known.
	Entrypoint *ResolvedFile `json:"entrypoint,omitempty"`
	// PolicyModes is the mode of each policy selecting the container.
	PolicyModes map[string]string `json:"policyModes,omitempty"`
	Rules       []ExplainedRule   `json:"rules"`
	// Warnings concern the container as a whole.
	Warnings []string `json:"warnings,omitempty"`
}

// ExplainedRule is one exec rule resolved in one container.
type ExplainedRule struct {
	Policy string `json:"policy"`
	Field  string `json:"field"` // e.g. spec.exec.deny[0]
	Rule   string `json:"rule"`  // the path as written, canonical
	RuleID uint32 `json:"ruleId"`
	Mode   string `json:"mode"` // its policy's: ModeEnforce or ModeAudit
	// File is what the rule resolved to; nil when it resolves to nothing.
	File *ResolvedFile `json:"file,omitempty"`
	// Enforced says the file's identity is in the kernel's map for this
	// container (exact rules only; prefix rules match resolved paths).
	Enforced bool     `json:"enforced"`
	Warnings []string `json:"warnings,omitempty"`
}

// ResolvedFile is a path resolved inside a container's root.
type ResolvedFile struct {
	Target string   `json:"target"`          // resolved path inside the root
	Links  []string `json:"links,omitempty"` // symlinks followed
	ID     string   `json:"id"`              // major:minor:inode as the kernel sees it
}

// Request is what a client sends.
type Request struct {
	Op         string      `json:"op"`
	Container  *Container  `json:"container,omitempty"`
	ID         string      `json:"id,omitempty"`
	Source     string      `json:"source,omitempty"`
	Containers []Container `json:"containers,omitempty"`
	// Events selects the lines an OpSubscribe request streams.
	Events *EventFilter `json:"events,omitempty"`
	Hook   *HookRun     `json:"hook,omitempty"`
}

// HookRun is one run of an OCI hook: the stage it is installed at and the
// state JSON the runtime wrote to its stdin, untouched. The engine reads
// the bundle's config.json through the hook's own root (its peer), finds
// the cgroup of the container's process, and registers it.
type HookRun struct {
	Stage string          `json:"stage"`
	State json.RawMessage `json:"state"`
}

// Response is what the engine answers. Error is set on failure only.
type Response struct {
	Error string `json:"error,omitempty"`
	// Code classifies Error: CodeNotFound, CodeCannotEnforce or empty.
	Code      string     `json:"code,omitempty"`
	NotFound  bool       `json:"notFound,omitempty"`
	Container *Container `json:"container,omitempty"`
	// Removed is the container an OpHook unregister removed, for the
	// hook's log (a key of its own: an older hook reads container as
	// registered).
	Removed    *Container   `json:"removed,omitempty"`
	Containers []Container  `json:"containers,omitempty"`
	Status     *Status      `json:"status,omitempty"`
	Explain    *Explanation `json:"explain,omitempty"`
	// Steps time the engine's handling of an OpHook request, for the
	// hook's decision log (EndStep names them).
	Steps oneshot.Steps `json:"stepsUs,omitempty"`
}

// Status describes what the engine enforces and how.
type Status struct {
	Version    string          `json:"version"`
	ABI        string          `json:"abi"`
	BPFDir     string          `json:"bpfDir"`
	StateDir   string          `json:"stateDir"`
	CgroupRoot string          `json:"cgroupRoot"`
	CgroupMode string          `json:"cgroupMode"` // unified or hybrid
	Adopted    bool            `json:"adopted"`    // pins were adopted, not loaded
	Controls   []Control       `json:"controls"`
	Pinned     []PinnedObject  `json:"pinned"`
	Policies   []PolicySummary `json:"policies"`
	Containers int             `json:"containers"`
	Rulesets   int             `json:"rulesets"`
	// Counters are the kernel's running totals since the pins were made.
	Counters Counters `json:"counters"`
	// Uncovered lists the exec routes the active mode does not stop.
	Uncovered []string `json:"uncovered,omitempty"`
	// PolicyError is why the policy dir was last refused; the previous
	// policies stay enforced.
	PolicyError string `json:"policyError,omitempty"`
	// PolicyErrors is PolicyError split by the file each problem is in.
	PolicyErrors []PolicyFileError `json:"policyErrors,omitempty"`
	// Ready: pins loaded or adopted, registry reconciled, policies loaded
	// and (when asked for) the policy directory watched. NotReady says
	// what is missing.
	Ready    bool   `json:"ready"`
	NotReady string `json:"notReady,omitempty"`
	// Maps are the fill levels of the BPF maps whose capacity is set by
	// the engine's --max-* flags.
	Maps []MapUsage `json:"maps"`
	// Orphans are pinned cgroup entries no registration accounts for (the
	// registry was lost): they stay enforced while their cgroup exists.
	Orphans []Orphan `json:"orphans,omitempty"`
	// CgroupCheck says how registrars' cgroup claims are checked against
	// the kernel ("process" or why they cannot be).
	CgroupCheck string `json:"cgroupCheck,omitempty"`
	// FileIdentity says how the devices of exec rules' files are read when
	// rules are resolved in a container's root: "statmount" or "mountinfo".
	FileIdentity string `json:"fileIdentity,omitempty"`
	// CRI is the CRI runtime the engine reconciles with, if any.
	CRI *CRIStatus `json:"cri,omitempty"`
	// EventsFile is the engine's --events file, which `holdfast events
	// --since` replays; empty when events go to stderr.
	EventsFile string `json:"eventsFile,omitempty"`
	// EventSubscribers are the clients following the event stream.
	EventSubscribers int `json:"eventSubscribers"`
	// RedactionFilters are the filters in force; RedactionError is why
	// the policy dir's filters were last refused (the previous set stays).
	RedactionFilters []string `json:"redactionFilters,omitempty"`
	RedactionError   string   `json:"redactionError,omitempty"`
	// EnvCapture is the kernel's environment capture switch as read
	// back from its pinned map: on or off, or why it could not be read.
	EnvCapture string `json:"envCapture,omitempty"`
}

// CRIStatus is the state of reconciliation with the node's CRI runtime.
type CRIStatus struct {
	Endpoint string `json:"endpoint"`
	// Interval between reconciliations; 0: only at start.
	Interval string `json:"interval"`
	LastRun  string `json:"lastRun,omitempty"` // RFC 3339
	LastErr  string `json:"lastError,omitempty"`
	// Registered counts the containers registered from the CRI listing.
	Registered int `json:"registered"`
}

// MapUsage is one BPF map's fill level.
type MapUsage struct {
	Name string `json:"name"`
	// Entries is -1 for a map without an entry count (the ring buffer,
	// whose capacity is in bytes).
	Entries  int    `json:"entries"`
	Capacity uint32 `json:"capacity"`
	// Requested is the configured capacity; pinned maps keep the one they
	// were created with until `holdfast uninstall`.
	Requested uint32 `json:"requested"`
}

// Orphan is an enforced cgroup entry without a registration.
type Orphan struct {
	ID       string `json:"id"` // OrphanPrefix + cgroup ID
	CgroupID uint64 `json:"cgroupId"`
	Path     string `json:"path"`
	Ruleset  uint32 `json:"ruleset"`
}

// Counters count enforcement decisions in the kernel.
type Counters struct {
	ExecChecked    uint64 `json:"execChecked"`
	ExecDenied     uint64 `json:"execDenied"`
	ExecUnresolved uint64 `json:"execUnresolved"`
	ConnectChecked uint64 `json:"connectChecked"`
	ConnectRefused uint64 `json:"connectRefused"`
	EventsLost     uint64 `json:"eventsLost"`
	// DenialsUntracked were not counted per container (denials map full).
	DenialsUntracked uint64 `json:"denialsUntracked"`
	// Audited decisions of audit-mode rules were recorded and let through.
	Audited uint64 `json:"audited"`
}

// Control is one enforcement point and the mode it runs in.
type Control struct {
	Name   string `json:"name"`   // exec, connect
	Mode   string `json:"mode"`   // lsm, kill, cgroup
	Reason string `json:"reason"` // why this mode was chosen
}

// PinnedObject is one program, link or map on bpffs.
type PinnedObject struct {
	Path string `json:"path"`
	Kind string `json:"kind"` // program, link, map
	ID   uint32 `json:"id"`
}

// PolicySummary is one loaded policy.
type PolicySummary struct {
	Name string `json:"name"`
	File string `json:"file"`
	Mode string `json:"mode"` // ModeEnforce or ModeAudit
}

// PolicyFileError is one refused policy file and why. File is empty for a
// problem with the directory itself.
type PolicyFileError struct {
	File   string   `json:"file"`
	Errors []string `json:"errors"`
}
