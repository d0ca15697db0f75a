package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
)

// logLine is one decision in the hook log (JSON lines).
type logLine struct {
	Time       string           `json:"time"`
	Stage      ocihook.Stage    `json:"stage"`
	Action     string           `json:"action"`
	Outcome    string           `json:"outcome"`
	ID         string           `json:"id,omitempty"`
	Namespace  string           `json:"namespace,omitempty"`
	Pod        string           `json:"pod,omitempty"`
	Container  string           `json:"container,omitempty"`
	CgroupID   uint64           `json:"cgroupId,omitempty"`
	CgroupPath string           `json:"cgroupPath,omitempty"`
	CgroupFrom string           `json:"cgroupFrom,omitempty"`
	Policies   []string         `json:"policies,omitempty"`
	Reason     string           `json:"reason,omitempty"`
	Error      string           `json:"error,omitempty"`
	ElapsedUS  int64            `json:"elapsedUs"`
	StepsUS    map[string]int64 `json:"stepsUs,omitempty"`
}

// LogLine renders the decision as one JSON line.
func (d *Decision) LogLine() []byte {
	l := logLine{
		Time:       d.Time.UTC().Format(time.RFC3339Nano),
		Stage:      d.Stage,
		Action:     d.Action,
		Outcome:    d.Outcome,
		ID:         d.Container.ID,
		Namespace:  d.Container.Namespace,
		Pod:        d.Container.Pod,
		Container:  d.Container.Name,
		CgroupID:   d.Cgroup.ID,
		CgroupPath: d.Cgroup.Path,
		CgroupFrom: d.Cgroup.From,
		Policies:   d.Container.Policies,
		Reason:     d.Reason,
		ElapsedUS:  d.Elapsed.Microseconds(),
	}
	if d.Err != nil {
		l.Error = d.Err.Error()
	}
	if len(d.Steps) > 0 {
		l.StepsUS = make(map[string]int64, len(d.Steps))
		for _, s := range d.Steps {
			l.StepsUS[s.Name] = s.Elapsed.Microseconds()
		}
	}
	data, err := json.Marshal(l)
	if err != nil {
		// Only strings and numbers: cannot happen, but never lose the line.
		data = []byte(fmt.Sprintf(`{"outcome":%q,"error":%q}`, d.Outcome, err.Error()))
	}
	return append(data, '\n')
}

// StderrLine is the single line a failing-closed hook prints for the
// runtime to show the user; empty when there is nothing to say.
func (d *Decision) StderrLine() string {
	if d.Err == nil {
		return ""
	}
	id := d.Container.ID
	if id == "" {
		id = "(unknown)"
	}
	var msg string
	switch d.Outcome {
	case OutcomeFailClosed:
		msg = fmt.Sprintf("holdfast-oci-hook: refusing container %s: could not register it with the holdfast engine (%s): %v", id, d.Reason, d.Err)
	case OutcomeUnregisterErr:
		msg = fmt.Sprintf("holdfast-oci-hook: could not unregister container %s: %v", id, d.Err)
	default:
		return ""
	}
	return oneLine(msg) + "\n"
}

// oneLine folds newlines so a message stays one line on a terminal or in a log.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// AppendLog appends the decision to the log file named by cfg.Log ("-" is
// w, "none" nothing). Each decision is one write on an O_APPEND file, so
// concurrent hooks do not interleave lines.
func AppendLog(logPath string, stderr io.Writer, d *Decision) error {
	line := d.LogLine()
	switch logPath {
	case "none":
		return nil
	case "-":
		_, err := stderr.Write(line)
		return err
	}
	open := func() (*os.File, error) {
		return os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
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
