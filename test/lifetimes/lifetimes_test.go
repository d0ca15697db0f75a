package lifetimes

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		line string
		want event
	}{
		{"            runc-4242    [001] ..... 14423.030060: sched_process_fork: comm=runc pid=4242 child_comm=runc child_pid=4250",
			event{name: "sched_process_fork", at: 14423030060 * time.Microsecond, pid: 4250}},
		{"           <...>-4250    [000] ..... 14423.031000: sched_process_exec: filename=/tmp/a b/hook pid=4250 old_pid=4250",
			event{name: "sched_process_exec", at: 14423031000 * time.Microsecond, pid: 4250, path: "/tmp/a b/hook"}},
		{" holdfast-oci-ho-4250    [001] d.... 14423.032500: sched_process_exit: comm=holdfast-oci-ho pid=4250 prio=120 group_dead=false",
			event{name: "sched_process_exit", at: 14423032500 * time.Microsecond, pid: 4250}},
		{"  a comm-9 [000] ..... 0.000001: sched_process_exit: comm=a comm pid=9 prio=120",
			event{name: "sched_process_exit", at: time.Microsecond, pid: 9}},
	} {
		got, err := parse(tc.line)
		if err != nil || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"CPU:1 [LOST 12 EVENTS]",
		"runc-1 [000] ..... 1.5: sched_process_exit: comm=runc pid=1 prio=120",
		"runc-1 [000] ..... 1.000005: sched_process_exec: pid=1 old_pid=1",
		"runc-1 [000] ..... 1.000005: sched_process_exit: comm=runc prio=120",
		"runc-1 [000] ..... 1.000005: sched_process_free: comm=runc pid=1 prio=120",
		"runc-1 [000] ..... 1.000005: sched_process_fork: comm=runc pid=1 child_comm=runc child_pid=x",
	} {
		if ev, err := parse(bad); err == nil {
			t.Errorf("parse(%q) = %+v, want an error", bad, ev)
		}
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
