// Package lifetimes times processes as the kernel sees them, from the fork
// that made each one to its exit, with the sched tracepoints of a tracefs
// instance of its own. A runtime waits for each hook it runs, so a hook's
// lifetime is exactly what the hook adds to the runtime's call, measured
// without the runtime's own run-to-run noise (which, for `runc create`, is
// larger than what a fast hook costs).
package lifetimes

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// Span is one process's life. Times are CLOCK_MONOTONIC (Now), the
// trace's clock, at the tracepoints' microsecond resolution.
type Span struct {
	Path string // what the first exec of a watched path named
	PID  int
	Fork time.Duration // the fork that made the process
	Exec time.Duration
	Exit time.Duration // its last thread's exit, else (not traced) its leader's
}

// Lifetime is the time from fork to exit: what a parent waiting for the
// process pays for it, but for the end of the exit (the address space's
// teardown, the parent's wake-up), which the exit tracepoint precedes.
func (s Span) Lifetime() time.Duration { return s.Exit - s.Fork }

// Now reads CLOCK_MONOTONIC, the clock of the trace's timestamps.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

// Tracer records the spans of processes that exec one of its paths.
type Tracer struct {
	dir    string // the tracefs instance
	pipe   *os.File
	marker string
	done   chan error

	mu    sync.Mutex
	spans []Span

	stop    sync.Once
	stopErr error
}

var events = []string{"sched_process_fork", "sched_process_exec", "sched_process_exit"}

// Start makes a tracefs instance recording forks, execs and exits and reads
// it until Stop. Needs root and tracefs.
func Start(paths ...string) (*Tracer, error) {
	if err := linux.MountTracefs(); err != nil {
		return nil, fmt.Errorf("start lifetimes tracer: %w", err)
	}
	dir := filepath.Join(linux.TracefsDir, "instances", fmt.Sprintf("holdfast-lifetimes-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start lifetimes tracer: make tracefs instance: %w", err)
	}
	t := &Tracer{dir: dir, marker: fmt.Sprintf("holdfast-lifetimes-end-%d", time.Now().UnixNano()), done: make(chan error, 1)}
	// record-tgid prints each line's process ID beside its thread ID: a
	// process ends with its last thread, which need not be its first.
	settings := [][2]string{{"trace_clock", "mono"}, {"buffer_size_kb", "4096"}, {"options/record-tgid", "1"}}
	for _, ev := range events {
		settings = append(settings, [2]string{"events/sched/" + ev + "/enable", "1"})
	}
	for _, s := range settings {
		if err := os.WriteFile(filepath.Join(dir, s[0]), []byte(s[1]), 0); err != nil {
			t.remove()
			return nil, fmt.Errorf("start lifetimes tracer: set %s: %w", s[0], err)
		}
	}
	pipe, err := os.Open(filepath.Join(dir, "trace_pipe"))
	if err != nil {
		t.remove()
		return nil, fmt.Errorf("start lifetimes tracer: %w", err)
	}
	t.pipe = pipe
	watched := map[string]bool{}
	for _, p := range paths {
		watched[p] = true
	}
	go func() { t.done <- t.read(t.pipe, watched) }()
	return t, nil
}

// read follows the trace until the end marker: a fork notes when a pid
// began, an exec of a watched path opens its span, the exit of the
// process's last thread closes it. The leader's exit ends it for now: an
// exec from another thread (which ends the leader first) goes on with the
// span, and a later thread's exit that ends the thread group moves its end.
// That exit names its process only if the trace has learned the thread's
// (record-tgid, at a context switch); else the leader's exit stands.
func (t *Tracer) read(trace io.Reader, watched map[string]bool) error {
	forked := map[int]time.Duration{}
	open := map[int]*Span{} // by process ID; Exit set once the leader exited
	closeSpan := func(pid int) {
		t.mu.Lock()
		t.spans = append(t.spans, *open[pid])
		t.mu.Unlock()
		delete(open, pid)
	}
	sc := bufio.NewScanner(trace)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, t.marker) {
			for pid, s := range open {
				if s.Exit != 0 {
					closeSpan(pid)
				}
			}
			return nil
		}
		if strings.Contains(line, "LOST") && !strings.Contains(line, ": sched_process_") {
			return fmt.Errorf("read %s/trace_pipe: %s: spans may be missing", t.dir, line)
		}
		ev, err := parse(line)
		if err != nil {
			// A line a file name with a newline broke, from any process
			// on the machine: the spans a caller asks for are checked
			// one by one, so one missing here fails there.
			continue
		}
		switch ev.name {
		case "sched_process_fork":
			if s := open[ev.pid]; s != nil && s.Exit != 0 {
				closeSpan(ev.pid) // the pid is reused: that process is gone
			}
			forked[ev.pid] = ev.at
		case "sched_process_exec":
			if s := open[ev.pid]; s != nil {
				s.Exit = 0 // an exec from another thread ended the leader
				continue
			}
			if fork, ok := forked[ev.pid]; ok && watched[ev.path] {
				open[ev.pid] = &Span{Path: ev.path, PID: ev.pid, Fork: fork, Exec: ev.at}
			}
		case "sched_process_exit":
			if s := open[ev.pid]; s != nil {
				s.Exit = ev.at
				if ev.groupDead {
					closeSpan(ev.pid)
				}
				continue
			}
			delete(forked, ev.pid)
			// A stale process ID (a pid of a thread gone) can only name a
			// process whose leader has exited, which is all it may move.
			if s := open[ev.tgid]; ev.groupDead && s != nil && s.Exit != 0 {
				s.Exit = ev.at
				closeSpan(ev.tgid)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s/trace_pipe: %w", t.dir, err)
	}
	return fmt.Errorf("read %s/trace_pipe: ended before its end marker", t.dir)
}

type event struct {
	name      string
	at        time.Duration
	pid       int    // fork: the child's; exec, exit: the task's
	tgid      int    // the task's process, when the trace knows it
	path      string // exec
	groupDead bool   // exit: the process's last thread
}

// parse reads one trace_pipe line of the three events, as their print
// formats write them with record-tgid on:
//
//	<comm>-<tid> (<tgid>) [cpu] flags <sec>.<usec>: sched_process_exec: filename=<path> pid=<pid> old_pid=<pid>
//
// where <tgid> is dashes when the trace has not learned it.
func parse(line string) (event, error) {
	var ev event
	i := strings.Index(line, ": sched_process_")
	if i < 0 {
		return ev, fmt.Errorf("trace line %q: not a sched_process event", line)
	}
	head := strings.Fields(line[:i])
	if len(head) == 0 {
		return ev, fmt.Errorf("trace line %q: no timestamp", line)
	}
	if open := strings.LastIndex(line[:i], "("); open >= 0 {
		if end := strings.Index(line[open:i], ")"); end > 0 {
			ev.tgid, _ = strconv.Atoi(strings.TrimSpace(line[open+1 : open+end]))
		}
	}
	at, err := parseSeconds(head[len(head)-1])
	if err != nil {
		return ev, fmt.Errorf("trace line %q: %w", line, err)
	}
	rest := line[i+2:]
	name, fields, ok := strings.Cut(rest, ": ")
	if !ok {
		return ev, fmt.Errorf("trace line %q: no fields", line)
	}
	ev.name, ev.at = name, at
	pidKey := " pid="
	switch name {
	case "sched_process_fork":
		pidKey = " child_pid="
	case "sched_process_exec":
		end := strings.LastIndex(fields, " pid=")
		path, ok := strings.CutPrefix(fields[:max(end, 0)], "filename=")
		if end < 0 || !ok {
			return ev, fmt.Errorf("trace line %q: no filename", line)
		}
		ev.path = path
	case "sched_process_exit":
		ev.groupDead = strings.HasSuffix(fields, " group_dead=true")
	default:
		return ev, fmt.Errorf("trace line %q: unexpected event %s", line, name)
	}
	j := strings.LastIndex(fields, pidKey)
	if j < 0 {
		return ev, fmt.Errorf("trace line %q: no%s", line, pidKey)
	}
	num, _, _ := strings.Cut(fields[j+len(pidKey):], " ")
	if ev.pid, err = strconv.Atoi(num); err != nil {
		return ev, fmt.Errorf("trace line %q: %w", line, err)
	}
	return ev, nil
}

// parseSeconds reads the trace's "<sec>.<usec>:" timestamp.
func parseSeconds(s string) (time.Duration, error) {
	sec, usec, ok := strings.Cut(strings.TrimSuffix(s, ":"), ".")
	if !ok || len(usec) != 6 {
		return 0, fmt.Errorf("timestamp %q is not <sec>.<usec>", s)
	}
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(usec, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("timestamp %q: %w", s, err)
	}
	return time.Duration(a)*time.Second + time.Duration(b)*time.Microsecond, nil
}

// Stop ends the trace once every event before it is read, removes the
// instance and returns the spans of the processes that exited. It fails if
// the kernel dropped any event, since a span could then be missing. Later
// calls return what the first did: a test's cleanup may call it again.
func (t *Tracer) Stop() ([]Span, error) {
	t.stop.Do(func() { t.stopErr = t.end() })
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopErr != nil {
		return nil, fmt.Errorf("stop lifetimes tracer: %w", t.stopErr)
	}
	return t.spans, nil
}

func (t *Tracer) end() error {
	err := os.WriteFile(filepath.Join(t.dir, "trace_marker"), []byte(t.marker), 0)
	if err == nil {
		select {
		case err = <-t.done:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("read %s/trace_pipe: end marker not seen in 10s", t.dir)
		}
	}
	if err == nil {
		err = t.lost()
	}
	t.pipe.Close()
	if rerr := t.remove(); err == nil {
		err = rerr
	}
	return err
}

// lost reports events the instance's per-CPU buffers overwrote or dropped.
func (t *Tracer) lost() error {
	stats, _ := filepath.Glob(filepath.Join(t.dir, "per_cpu", "cpu*", "stats"))
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			key, val, _ := strings.Cut(line, ":")
			if (key == "overrun" || key == "dropped events") && strings.TrimSpace(val) != "0" {
				return fmt.Errorf("%s: %s %s: spans may be missing", path, key, strings.TrimSpace(val))
			}
		}
	}
	return nil
}

func (t *Tracer) remove() error {
	for _, ev := range events {
		_ = os.WriteFile(filepath.Join(t.dir, "events/sched", ev, "enable"), []byte("0"), 0)
	}
	if err := os.Remove(t.dir); err != nil {
		return fmt.Errorf("remove tracefs instance: %w", err)
	}
	return nil
}

// In returns the spans of path whose fork fell within [from, to].
func In(spans []Span, path string, from, to time.Duration) []Span {
	var in []Span
	for _, s := range spans {
		if s.Path == path && s.Fork >= from && s.Fork <= to {
			in = append(in, s)
		}
	}
	return in
}
