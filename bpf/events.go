package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Event actions.
const (
	ActionExecKilled     = "exec-killed"     // kill mode: SIGKILL before the first instruction
	ActionExecDenied     = "exec-denied"     // lsm mode: execve failed with EPERM
	ActionConnectRefused = "connect-refused" // connect failed with EPERM
	ActionSendmsgRefused = "sendmsg-refused" // UDP sendmsg failed with EPERM
	ActionMmapKilled     = "mmap-killed"     // kill mode: a denied file mapped executable, SIGKILL before it runs
	ActionMmapDenied     = "mmap-denied"     // lsm mode: mmap or mprotect failed with EPERM
	ActionSocketRefused  = "socket-refused"  // socket() failed with EPERM; Port holds the socket type
	ActionBindRefused    = "bind-refused"    // bind() failed with EPERM
	ActionPacketDropped  = "packet-dropped"  // an egress packet of a raw, ping or other socket was dropped
	ActionSocketKilled   = "socket-killed"   // socket(AF_PACKET) caller got SIGKILL; Port holds the socket type
	ActionMoveKilled     = "move-killed"     // a task moved out of its container's cgroup got SIGKILL; Filename holds the destination
	ActionProcessExec    = "process_exec"    // a process of a container with exec events ran a binary (Filename)
	ActionProcessExit    = "process_exit"    // such a process exited
)

var actions = map[uint32]string{
	1:  ActionExecKilled,
	2:  ActionExecDenied,
	3:  ActionConnectRefused,
	4:  ActionSendmsgRefused,
	5:  ActionMmapKilled,
	6:  ActionMmapDenied,
	7:  ActionSocketRefused,
	8:  ActionBindRefused,
	9:  ActionPacketDropped,
	10: ActionSocketKilled,
	11: ActionMoveKilled,
	12: ActionProcessExec,
	13: ActionProcessExit,
}

// Address families of network events.
const (
	FamilyIPv4 uint16 = 2  // AF_INET
	FamilyIPv6 uint16 = 10 // AF_INET6
)

const (
	eventUnresolved = 1 << 0 // EVENT_UNRESOLVED
	eventNotAllowed = 1 << 1 // EVENT_NOT_ALLOWED
)

// An Event is one enforcement action.
type Event struct {
	Time     time.Time
	Action   string
	PID      uint32 // thread ID
	TGID     uint32 // process ID
	PPID     uint32 // parent process ID (exec events)
	CgroupID uint64
	RuleID   uint32
	Ruleset  uint32
	Comm     string
	Filename string // the path execve was given (exec events); the file's name, without directories (mmap events)
	// Unresolved: the executable's path was too deep to resolve, so it was
	// refused without a rule match (RuleID is 0).
	Unresolved bool
	// NotAllowed: the executable is not on the container's exec allow
	// list (RuleID is 0).
	NotAllowed bool
	Family     uint16     // FamilyIPv4 or FamilyIPv6 (network events)
	Addr       netip.Addr // destination as the caller gave it
	Port       uint16
	Proto      uint8 // ProtoTCP, ProtoUDP or another IPPROTO number
	// Audited: the rule is in audit mode; the operation went ahead (no
	// kill, no refusal, no drop). Action says what enforcing would do.
	Audited bool
	// StartNs is the acting process's start in ns since boot (its exec
	// ID with TGID; Process); 0 where no process is known (egress).
	StartNs uint64
}

// An EventReader reads the events ring buffer. Events go to one reader: do
// not open several for one set of pins.
type EventReader struct {
	rd    *ringbuf.Reader
	clock *bootClock
}

// Events opens a reader of the events ring buffer.
func (e *Enforcer) Events() (*EventReader, error) {
	rd, err := ringbuf.NewReader(e.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("open events ring buffer: %w", err)
	}
	clock, err := newBootClock()
	if err != nil {
		rd.Close()
		return nil, fmt.Errorf("open events: %w", err)
	}
	return &EventReader{rd: rd, clock: clock}, nil
}

// SetDeadline makes Read return os.ErrDeadlineExceeded once t has passed
// with no event. The zero time means no deadline.
func (r *EventReader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Pending is how many bytes of events wait in the ring buffer.
func (r *EventReader) Pending() int { return r.rd.AvailableBytes() }

// Read blocks until the next event, the deadline or Close (then the error
// wraps os.ErrClosed).
func (r *EventReader) Read() (Event, error) {
	rec, err := r.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return Event{}, fmt.Errorf("read event: %w", os.ErrClosed)
	}
	if err != nil {
		return Event{}, fmt.Errorf("read event: %w", err)
	}
	var raw holdfastEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &raw); err != nil {
		return Event{}, fmt.Errorf("decode event of %d bytes: %w", len(rec.RawSample), err)
	}
	return r.decode(raw)
}

func (r *EventReader) decode(raw holdfastEvent) (Event, error) {
	action, ok := actions[raw.Action&^actionAudited]
	if !ok {
		return Event{}, fmt.Errorf("decode event: unknown action %d", raw.Action)
	}
	when, err := r.clock.wallTime(time.Duration(raw.TsNs))
	if err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	ev := Event{
		Time:       when,
		Action:     action,
		PID:        raw.Pid,
		TGID:       raw.Tgid,
		PPID:       raw.Ppid,
		CgroupID:   raw.CgroupId,
		RuleID:     raw.RuleId,
		Ruleset:    raw.Ruleset,
		Comm:       cString(raw.Comm[:]),
		Filename:   cString(raw.Filename[:]),
		Unresolved: raw.Flags&eventUnresolved != 0,
		NotAllowed: raw.Flags&eventNotAllowed != 0,
		Family:     raw.Family,
		Port:       raw.Port,
		Proto:      raw.Proto,
		Audited:    raw.Action&actionAudited != 0,
		StartNs:    raw.StartNs,
	}
	switch {
	case ev.Action == ActionSocketRefused || ev.Action == ActionSocketKilled:
		// No address: Family, Port (the socket type) and Proto describe
		// the socket.
	case raw.Family == FamilyIPv4:
		ev.Addr = netip.AddrFrom4([4]byte(raw.Addr[:4]))
	case raw.Family == FamilyIPv6:
		ev.Addr = netip.AddrFrom16(raw.Addr)
	}
	return ev, nil
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// Close unblocks Read and releases the reader.
func (r *EventReader) Close() error {
	err := r.rd.Close()
	r.clock.close()
	if err != nil {
		return fmt.Errorf("close event reader: %w", err)
	}
	return nil
}

// The rate limit of events.h: EventBurst events per container, rule and
// action reach the ring buffer per EventWindow; the rest are only counted.
const (
	EventBurst  = 5
	EventWindow = 10 * time.Second
)

// A DenialKey names what the kernel counts denials by.
type DenialKey struct {
	CgroupID uint64
	RuleID   uint32
	Action   string
	Audited  bool // counted apart: audit-mode decisions that let the operation go ahead
}

// DenialCount is the kernel's running count of one DenialKey since its
// entry was created: Total denials, of which Sent reached the ring buffer
// and Lost found it full; the rest were held back by the rate limit.
type DenialCount struct {
	Total, Sent, Lost uint64
}

// Denials reads the per-(cgroup, rule, action) denial counters.
func (e *Enforcer) Denials() (map[DenialKey]DenialCount, error) {
	out := map[DenialKey]DenialCount{}
	var k holdfastDenialKey
	var v holdfastDenialValue
	iter := e.maps.Denials.Iterate()
	for iter.Next(&k, &v) {
		action, ok := actions[k.Action&^actionAudited]
		if !ok {
			action = fmt.Sprintf("action-%d", k.Action)
		}
		dk := DenialKey{CgroupID: k.CgroupId, RuleID: k.RuleId, Action: action, Audited: k.Action&actionAudited != 0}
		out[dk] = DenialCount{Total: v.Total, Sent: v.Sent, Lost: v.Lost}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read denials: %w", err)
	}
	return out, nil
}

// DeleteDenials drops the denial counters of the given cgroups (after their
// last summary), making room for other cgroups. One walk of the map serves
// them all.
func (e *Enforcer) DeleteDenials(cgroupIDs ...uint64) error {
	drop := map[uint64]bool{}
	for _, id := range cgroupIDs {
		drop[id] = true
	}
	keys, err := keysOf[holdfastDenialKey](e.maps.Denials, func(k holdfastDenialKey) bool { return drop[k.CgroupId] })
	if err != nil {
		return fmt.Errorf("delete denials of cgroups %v: %w", cgroupIDs, err)
	}
	for _, k := range keys {
		if err := e.maps.Denials.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete denials of cgroup %d: %w", k.(holdfastDenialKey).CgroupId, err)
		}
	}
	return nil
}
