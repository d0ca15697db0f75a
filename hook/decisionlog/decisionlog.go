// Package decisionlog writes the OCI hook's decision log: one JSON line per
// run, appended to a file shared by every hook process on the node. Both
// halves of the hook write it (hook/fastpath and package hook), so a line
// reads the same whichever half made the decision.
//
// The line is written out by hand: the hook is a new process per container
// start, and encoding/json would first build its encoders by reflection,
// which costs more than the line itself. It imports of this module only
// bpf/linux and jsonenc (strings as encoding/json writes them).
package decisionlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/jsonenc"
	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// Outcomes a decision records.
const (
	OutcomeRegistered   = "registered"
	OutcomeUnregistered = "unregistered"
	// The engine could not be reached; the hook wrote the registration
	// (or its removal) itself, for the engine to adopt when it is back.
	OutcomeRegisteredOffline   = "registered-offline"
	OutcomeUnregisteredOffline = "unregistered-offline"
	OutcomeNotRegistered       = "not-registered" // poststop of a container the engine did not know
	OutcomeFailOpen            = "fail-open"
	OutcomeFailClosed          = "fail-closed"
	OutcomeUnregisterErr       = "unregister-failed"
)

// Entry is one run's decision. Fields that are empty are left out of the line.
type Entry struct {
	Time                          time.Time
	Stage, Action, Outcome        string
	ID, Namespace, Pod, Container string
	CgroupID                      uint64
	CgroupPath, CgroupFrom        string
	Policies                      []string
	Reason, Error                 string
	Elapsed                       time.Duration
	// Steps times each step that ran, in order.
	Steps []Step
}

// Step is one timed step of a run.
type Step struct {
	Name    string
	Elapsed time.Duration
}

// EngineSteps are the steps an engine's answer timed, for the log: a run's
// "engine" step is the whole call as the hook saw it, "engine.<step>"
// each part of it as the engine timed it.
func EngineSteps(steps oneshot.Steps) []Step {
	out := make([]Step, 0, len(steps))
	for _, s := range steps {
		out = append(out, Step{Name: "engine." + s.Name, Elapsed: time.Duration(s.Us) * time.Microsecond})
	}
	return out
}

// Line renders the entry as one JSON line.
func (e *Entry) Line() []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"time":`...)
	b = jsonenc.String(b, e.Time.UTC().Format(time.RFC3339Nano))
	field := func(name, value string) {
		if value != "" {
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = jsonenc.String(b, value)
		}
	}
	field("stage", e.Stage)
	field("action", e.Action)
	field("outcome", e.Outcome)
	field("id", e.ID)
	field("namespace", e.Namespace)
	field("pod", e.Pod)
	field("container", e.Container)
	if e.CgroupID != 0 {
		b = append(b, `,"cgroupId":`...)
		b = strconv.AppendUint(b, e.CgroupID, 10)
	}
	field("cgroupPath", e.CgroupPath)
	field("cgroupFrom", e.CgroupFrom)
	if len(e.Policies) > 0 {
		b = append(b, `,"policies":[`...)
		for i, p := range e.Policies {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.String(b, p)
		}
		b = append(b, ']')
	}
	field("reason", e.Reason)
	field("error", e.Error)
	b = append(b, `,"elapsedUs":`...)
	b = strconv.AppendInt(b, e.Elapsed.Microseconds(), 10)
	if len(e.Steps) > 0 {
		// A step that ran twice (an engine call retried another way) is
		// logged once, with both times.
		var names []string
		total := map[string]int64{}
		for _, s := range e.Steps {
			if _, ok := total[s.Name]; !ok {
				names = append(names, s.Name)
			}
			total[s.Name] += s.Elapsed.Microseconds()
		}
		b = append(b, `,"stepsUs":{`...)
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.String(b, n)
			b = append(b, ':')
			b = strconv.AppendInt(b, total[n], 10)
		}
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}

// StderrLine is the single line a failed run prints for the runtime to show
// the user (err is why it failed): for a refused container and a failed
// unregister; empty otherwise.
func (e *Entry) StderrLine(err error) string {
	if err == nil {
		return ""
	}
	id := e.ID
	if id == "" {
		id = "(unknown)"
	}
	var msg string
	switch e.Outcome {
	case OutcomeFailClosed:
		msg = fmt.Sprintf("holdfast-oci-hook: refusing container %s: could not register it with the holdfast engine (%s): %v", id, e.Reason, err)
	case OutcomeUnregisterErr:
		msg = fmt.Sprintf("holdfast-oci-hook: could not unregister container %s: %v", id, err)
	default:
		return ""
	}
	return OneLine(msg) + "\n"
}

// OneLine folds newlines so a message stays one line on a terminal or in a log.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// Append appends line to the log file logPath ("-" is stderr, "none"
// nothing). Each line is one write on an O_APPEND file, so concurrent
// hooks do not interleave lines.
func Append(logPath string, stderr io.Writer, line []byte) error {
	switch logPath {
	case "none":
		return nil
	case "-":
		_, err := stderr.Write(line)
		return err
	}
	open := func() (*os.File, error) {
		return linux.OpenBlocking(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	f, err := open()
	if errors.Is(err, os.ErrNotExist) {
		// First run on this node: create the directory, only then.
		if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
			return fmt.Errorf("create hook log dir: %w", err)
		}
		f, err = open()
	}
	if err != nil {
		return fmt.Errorf("open hook log: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("write hook log %s: %w", logPath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close hook log %s: %w", logPath, err)
	}
	return nil
}
