package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// Event actions.
const (
	ActionExecKilled     = "exec-killed"     // kill mode: SIGKILL before the first instruction
	ActionExecDenied     = "exec-denied"     // lsm mode: execve failed with EPERM
	ActionConnectRefused = "connect-refused" // connect failed with EPERM
	ActionSendmsgRefused = "sendmsg-refused" // UDP sendmsg failed with EPERM
)

var actions = map[uint32]string{
	1: ActionExecKilled,
	2: ActionExecDenied,
	3: ActionConnectRefused,
	4: ActionSendmsgRefused,
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
	Filename string // the path execve was given (exec events)
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
	action, ok := actions[raw.Action]
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
	}
	switch raw.Family {
	case FamilyIPv4:
		ev.Addr = netip.AddrFrom4([4]byte(raw.Addr[:4]))
	case FamilyIPv6:
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
