package hook

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// LogLine renders the decision as one JSON line. It is written out by
// hand: the hook is a new process per container start, and encoding/json
// would first build its encoders by reflection, which costs more than the
// line itself. Fields that are empty are left out.
func (d *Decision) LogLine() []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"time":`...)
	b = appendJSONString(b, d.Time.UTC().Format(time.RFC3339Nano))
	field := func(name, value string) {
		if value != "" {
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = appendJSONString(b, value)
		}
	}
	number := func(name string, value int64) {
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, value, 10)
	}
	field("stage", string(d.Stage))
	field("action", d.Action)
	field("outcome", d.Outcome)
	field("id", d.Container.ID)
	field("namespace", d.Container.Namespace)
	field("pod", d.Container.Pod)
	field("container", d.Container.Name)
	if d.Cgroup.ID != 0 {
		b = append(b, `,"cgroupId":`...)
		b = strconv.AppendUint(b, d.Cgroup.ID, 10)
	}
	field("cgroupPath", d.Cgroup.Path)
	field("cgroupFrom", d.Cgroup.From)
	if len(d.Container.Policies) > 0 {
		b = append(b, `,"policies":[`...)
		for i, p := range d.Container.Policies {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p)
		}
		b = append(b, ']')
	}
	field("reason", d.Reason)
	if d.Err != nil {
		field("error", d.Err.Error())
	}
	number("elapsedUs", d.Elapsed.Microseconds())
	if len(d.Steps) > 0 {
		// A step that ran twice (an engine call retried another way) is
		// logged once, with both times.
		var names []string
		total := map[string]int64{}
		for _, s := range d.Steps {
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
			b = appendJSONString(b, n)
			b = append(b, ':')
			b = strconv.AppendInt(b, total[n], 10)
		}
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string as encoding/json writes it,
// HTML characters aside: quote, backslash and control characters escaped,
// invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
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
