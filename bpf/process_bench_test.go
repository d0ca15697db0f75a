package bpf

import (
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// BenchmarkForkExecExit runs a fork+exec+exit loop of /bin/true inside a
// registered cgroup, driven by a shell in that cgroup (so every fork has a
// tracked parent), alternating batches with the process-tracking programs
// attached and detached, so both see the same machine load. It reports the
// mean wall time per fork+exec+exit of each (on-ns/op, off-ns/op), the
// difference in percent, and the tracking programs' own mean run time.
//
//	go test -run '^$' -bench ForkExecExit -benchtime 40x ./bpf/
//
// One op is a batch of 50 fork+exec+exit with tracking on and 50 with it off.
func BenchmarkForkExecExit(b *testing.B) {
	const batch = 50
	trueBin := resolved(b, "/bin/true")
	cg, e := setupBench(b, benchOne)
	measureProgramAs(b, e, progProcFork, "fork-bpf-ns/run")
	measureProgramAs(b, e, progProcExec, "exec-bpf-ns/run")
	measureProgramAs(b, e, progProcExit, "exit-bpf-ns/run")

	detached := map[string]link.Link{}
	setTracking := func(on bool) {
		for _, name := range processPrograms {
			if on {
				l, err := link.AttachTracing(link.TracingOptions{Program: e.progs[name], AttachType: ebpf.AttachTraceRawTp})
				if err != nil {
					b.Fatal(err)
				}
				detached[name] = l
				continue
			}
			l := detached[name]
			if l == nil {
				l = e.links[name]
				if err := l.Unpin(); err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
	script := `i=0; while [ $i -lt $1 ]; do "$0"; i=$((i+1)); done`
	run := func() time.Duration {
		start := time.Now()
		if out, err := command(cg, "/bin/sh", "-c", script, trueBin, strconv.Itoa(batch)).CombinedOutput(); err != nil {
			b.Fatalf("loop: %v: %s", err, out)
		}
		return time.Since(start)
	}
	var on, off time.Duration
	for b.Loop() {
		on += run()
		setTracking(false)
		off += run()
		setTracking(true)
	}
	n := float64(b.N * batch)
	b.ReportMetric(float64(on.Nanoseconds())/n, "on-ns/op")
	b.ReportMetric(float64(off.Nanoseconds())/n, "off-ns/op")
	b.ReportMetric(100*(float64(on)-float64(off))/float64(off), "added-%")
}
