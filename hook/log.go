package hook

import (
	"io"

	"github.com/holdfast-dev/holdfast/hook/decisionlog"
)

// entry is the decision as the log has it.
func (d *Decision) entry() decisionlog.Entry {
	e := decisionlog.Entry{
		Time: d.Time, Stage: string(d.Stage), Action: d.Action, Outcome: d.Outcome,
		ID: d.Container.ID, Namespace: d.Container.Namespace, Pod: d.Container.Pod, Container: d.Container.Name,
		CgroupID: d.Cgroup.ID, CgroupPath: d.Cgroup.Path, CgroupFrom: d.Cgroup.From,
		Policies: d.Container.Policies, Reason: d.Reason, Elapsed: d.Elapsed, Steps: d.Steps,
	}
	if d.Err != nil {
		e.Error = d.Err.Error()
	}
	return e
}

// LogLine renders the decision as one JSON line.
func (d *Decision) LogLine() []byte {
	e := d.entry()
	return e.Line()
}

// StderrLine is the single line a failing-closed hook prints for the
// runtime to show the user; empty when there is nothing to say.
func (d *Decision) StderrLine() string {
	e := d.entry()
	return e.StderrLine(d.Err)
}

// AppendLog appends the decision to the log file logPath ("-" is stderr,
// "none" nothing); see decisionlog.Append.
func AppendLog(logPath string, stderr io.Writer, d *Decision) error {
	return decisionlog.Append(logPath, stderr, d.LogLine())
}
