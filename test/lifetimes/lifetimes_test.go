package lifetimes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want event
	}{
		{"            runc-4242    (   4240) [001] ..... 14423.030060: sched_process_fork: comm=runc pid=4242 child_comm=runc child_pid=4250",
			event{name: "sched_process_fork", at: 14423030060 * time.Microsecond, pid: 4250, tgid: 4240}},
		{"           <...>-4250    (-------) [000] ..... 14423.031000: sched_process_exec: filename=/tmp/a b/hook pid=4250 old_pid=4250",
			event{name: "sched_process_exec", at: 14423031000 * time.Microsecond, pid: 4250, path: "/tmp/a b/hook"}},
		{" holdfast-oci-ho-4251    (   4250) [001] d.... 14423.032500: sched_process_exit: comm=holdfast-oci-ho pid=4251 prio=120 group_dead=true",
			event{name: "sched_process_exit", at: 14423032500 * time.Microsecond, pid: 4251, tgid: 4250, groupDead: true}},
		{"  a (b) comm-9 (      9) [000] ..... 0.000001: sched_process_exit: comm=a (b) comm pid=9 prio=120 group_dead=false",
			event{name: "sched_process_exit", at: time.Microsecond, pid: 9, tgid: 9}},
	} {
		got, err := parse(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"CPU:1 [LOST 12 EVENTS]",
		"runc-1 (1) [000] ..... 1.5: sched_process_exit: comm=runc pid=1 prio=120",
		"runc-1 (1) [000] ..... 1.000005: sched_process_exec: pid=1 old_pid=1",
		"runc-1 (1) [000] ..... 1.000005: sched_process_exit: comm=runc prio=120",
		"runc-1 (1) [000] ..... 1.000005: sched_process_free: comm=runc pid=1 prio=120",
		"runc-1 (1) [000] ..... 1.000005: sched_process_fork: comm=runc pid=1 child_comm=runc child_pid=x",
	} {
		if ev, err := parse(bad); err == nil {
			t.Errorf("parse(%q) = %+v, want an error", bad, ev)
		}
	}
}

// TestReadEndsSpansWithTheProcess feeds read the orders of events a Go
// hook makes: its last thread not its first, and an exec from a thread
// other than the leader (the leader's exit comes first, then the exec
// under the leader's pid), which must not end the span.
func TestReadEndsSpansWithTheProcess(t *testing.T) {
	const hook, next = "/hook", "/next"
	line := func(tid, tgid int, at, ev, fields string) string {
		return fmt.Sprintf("  x-%d (%7d) [000] ..... %s: %s: %s\n", tid, tgid, at, ev, fields)
	}
	for _, tc := range []struct {
		name  string
		trace string
		want  []Span
	}{
		{"last thread not the leader", line(1, 1, "1.000000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=50") +
			line(50, 50, "1.000100", "sched_process_exec", "filename=/hook pid=50 old_pid=50") +
			line(1, 1, "1.000150", "sched_process_fork", "comm=hook pid=50 child_comm=hook child_pid=51") +
			line(50, 50, "1.002000", "sched_process_exit", "comm=hook pid=50 prio=120 group_dead=false") +
			line(51, 50, "1.003000", "sched_process_exit", "comm=hook pid=51 prio=120 group_dead=true"),
			[]Span{{Path: hook, PID: 50, Fork: time.Second, Exec: time.Second + 100*time.Microsecond, Exit: time.Second + 3*time.Millisecond}}},
		{"exec from another thread", line(1, 1, "1.000000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=50") +
			line(50, 50, "1.000100", "sched_process_exec", "filename=/hook pid=50 old_pid=50") +
			line(50, 50, "1.000200", "sched_process_fork", "comm=hook pid=50 child_comm=hook child_pid=52") +
			line(50, 50, "1.001000", "sched_process_exit", "comm=hook pid=50 prio=120 group_dead=false") +
			line(50, -1, "1.001100", "sched_process_exec", "filename=/next pid=50 old_pid=52") +
			line(50, 50, "1.051000", "sched_process_exit", "comm=next pid=50 prio=120 group_dead=true"),
			[]Span{{Path: hook, PID: 50, Fork: time.Second, Exec: time.Second + 100*time.Microsecond, Exit: time.Second + 51*time.Millisecond}}},
		{"leader with a stale process ID", line(1, 1, "1.000000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=70") +
			line(70, 70, "1.000100", "sched_process_exec", "filename=/hook pid=70 old_pid=70") +
			line(70, 33, "1.000900", "sched_process_exit", "comm=hook pid=70 prio=120 group_dead=true"),
			[]Span{{Path: hook, PID: 70, Fork: time.Second, Exec: time.Second + 100*time.Microsecond, Exit: time.Second + 900*time.Microsecond}}},
		{"last thread's process not known", line(1, 1, "1.000000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=80") +
			line(80, 80, "1.000100", "sched_process_exec", "filename=/hook pid=80 old_pid=80") +
			line(80, 80, "1.002000", "sched_process_exit", "comm=hook pid=80 prio=120 group_dead=false") +
			line(81, -1, "1.002100", "sched_process_exit", "comm=hook pid=81 prio=120 group_dead=true"),
			[]Span{{Path: hook, PID: 80, Fork: time.Second, Exec: time.Second + 100*time.Microsecond, Exit: time.Second + 2*time.Millisecond}}},
		{"pid reused after the leader's exit", line(1, 1, "1.000000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=90") +
			line(90, 90, "1.000100", "sched_process_exec", "filename=/hook pid=90 old_pid=90") +
			line(90, 90, "1.000500", "sched_process_exit", "comm=hook pid=90 prio=120 group_dead=false") +
			line(1, 1, "1.100000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=90") +
			line(90, 90, "1.100100", "sched_process_exec", "filename=/hook pid=90 old_pid=90") +
			line(90, 90, "1.100400", "sched_process_exit", "comm=hook pid=90 prio=120 group_dead=true"),
			[]Span{{Path: hook, PID: 90, Fork: time.Second, Exec: time.Second + 100*time.Microsecond, Exit: time.Second + 500*time.Microsecond},
				{Path: hook, PID: 90, Fork: 1100 * time.Millisecond, Exec: 1100100 * time.Microsecond, Exit: 1100400 * time.Microsecond}}},
		{"unwatched and thread forks", line(1, 1, "1.000000", "sched_process_fork", "comm=runc pid=1 child_comm=runc child_pid=60") +
			line(60, 60, "1.000100", "sched_process_exec", "filename=/next pid=60 old_pid=60") +
			line(60, 60, "1.000200", "sched_process_exit", "comm=next pid=60 prio=120 group_dead=true"),
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Tracer{marker: "end-marker"}
			trace := strings.ReplaceAll(tc.trace, "(     -1)", "(-------)") + "  x-1 (1) [000] ..... 2.000000: tracing_mark_write: end-marker\n"
			if err := tr.read(strings.NewReader(trace), map[string]bool{hook: true}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tr.spans, tc.want) {
				t.Errorf("spans %+v, want %+v", tr.spans, tc.want)
			}
		})
	}
	tr := &Tracer{marker: "end-marker"}
	if err := tr.read(strings.NewReader("CPU:0 [LOST 3 EVENTS]\n"), nil); err == nil || !strings.Contains(err.Error(), "LOST") {
		t.Errorf("a trace that lost events read as %v, want an error", err)
	}
}

// TestSpansOfRealProcesses runs a watched copy of sleep and one of true
// (and an unwatched one) and checks each watched run's span lies within
// the time its parent waited for it, the sleeper's for at least its sleep.
func TestSpansOfRealProcesses(t *testing.T) {
	require.Root(t)
	dir := t.TempDir()
	copyOf := func(name string) string {
		src, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, name)
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	sleeper, short := copyOf("sleep"), copyOf("true")
	tr, err := Start(sleeper, short)
	require.Privileged(t, "tracefs sched events", err)
	t.Cleanup(func() { tr.Stop() })
	type run struct {
		path     string
		from, to time.Duration
	}
	var runs []run
	for i := 0; i < 3; i++ {
		for _, cmd := range [][]string{{sleeper, "0.05"}, {short}, {"true"}} {
			from := Now()
			if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
			runs = append(runs, run{cmd[0], from, Now()})
		}
	}
	spans, err := tr.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tr.dir); !os.IsNotExist(err) {
		t.Errorf("tracefs instance %s left behind: %v", tr.dir, err)
	}
	watched := 0
	for _, r := range runs {
		in := In(spans, r.path, r.from, r.to)
		if r.path == "true" {
			if len(in) != 0 {
				t.Errorf("unwatched true has spans %+v", in)
			}
			continue
		}
		watched++
		if len(in) != 1 {
			t.Fatalf("%s run in [%v, %v]: %d spans, want 1 (all: %+v)", r.path, r.from, r.to, len(in), spans)
		}
		s := in[0]
		if !(r.from <= s.Fork && s.Fork <= s.Exec && s.Exec <= s.Exit && s.Exit <= r.to) {
			t.Errorf("%s span %+v not ordered within its run [%v, %v]", r.path, s, r.from, r.to)
		}
		if r.path == sleeper && s.Lifetime() < 50*time.Millisecond {
			t.Errorf("sleep 0.05 lived %v", s.Lifetime())
		}
	}
	if len(spans) != watched {
		t.Errorf("%d spans for %d watched runs: %+v", len(spans), watched, spans)
	}
}

// TestReadSkipsBrokenLines: a file name with a newline, from any process
// on the machine, breaks its line in two; the trace goes on.
func TestReadSkipsBrokenLines(t *testing.T) {
	trace := "  x-1 (      1) [000] ..... 1.000000: sched_process_fork: comm=runc pid=1 child_comm=runc child_pid=50\n" +
		"  x-9 (      9) [000] ..... 1.000050: sched_process_exec: filename=/tmp/a\n" +
		"b pid=9 old_pid=9\n" +
		"  x-50 (     50) [000] ..... 1.000100: sched_process_exec: filename=/hook pid=50 old_pid=50\n" +
		"  x-50 (     50) [000] ..... 1.000300: sched_process_exit: comm=hook pid=50 prio=120 group_dead=true\n" +
		"  x-1 (1) [000] ..... 2.000000: tracing_mark_write: end-marker\n"
	tr := &Tracer{marker: "end-marker"}
	if err := tr.read(strings.NewReader(trace), map[string]bool{"/hook": true}); err != nil {
		t.Fatal(err)
	}
	if len(tr.spans) != 1 || tr.spans[0].Lifetime() != 300*time.Microsecond {
		t.Errorf("spans %+v, want the hook's of 300µs", tr.spans)
	}
}
