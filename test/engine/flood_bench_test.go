package engine_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// floodPolicy denies TCP connects to 127.0.0.1 on ports first..first+n-1
// in namespace shop; each listed port is its own rule, so each has its own
// rate limit.
func floodPolicy(first, n int) string {
	var list []string
	for p := first; p < first+n; p++ {
		list = append(list, strconv.Quote(strconv.Itoa(p)))
	}
	return fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: flood}
spec:
  selector: {namespaces: [shop]}
  network:
    connect:
      deny: [{cidr: 127.0.0.1/32, ports: [%s], protocol: tcp}]
`, strings.Join(list, ", "))
}

// floodAccount is what the events file says of one cgroup's refused
// connects: the events written and the summaries' counts.
type floodAccount struct {
	written                         uint64 // connect-refused event lines
	denials, sent, lost, suppressed uint64 // summed over the summaries
	// totals sums each rule's latest running total: the kernel's count.
	totals uint64
}

func accountFlood(b *testing.B, path string, cgroupID uint64) floodAccount {
	var a floodAccount
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		b.Fatal(err)
	}
	a.written = uint64(bytes.Count(data, []byte(`"action":"connect-refused"`)))
	latest := map[string]uint64{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"summary":"connect-refused"`)) {
			continue
		}
		ev := decode(b, string(line))
		if uint64(ev["cgroupId"].(float64)) != cgroupID {
			continue
		}
		n := func(k string) uint64 { return uint64(ev[k].(float64)) }
		a.denials += n("count")
		a.sent += n("events")
		a.lost += n("lost")
		a.suppressed += n("suppressed")
		latest[fmt.Sprint(ev["rule"])] = n("total")
	}
	for _, total := range latest {
		a.totals += total
	}
	return a
}

// BenchmarkDeniedConnectFlood floods denied connects from one registered
// cgroup (one process, one socket) and measures what the engine makes of
// them: refused connects per second in the flooder, and event lines per
// second written to the events file from the flood's start to the last
// line. Every denial must be accounted for: the flooder's refusals equal
// the summaries' counts, the event lines equal the events the kernel
// sent, and counts = events + suppressed (rate limit) + lost (ring buffer
// full); any other outcome fails the benchmark.
//
// ports=4096 spreads the flood over 4096 rules, each with its own rate
// limit: up to 5 x 4096 events per 10 s window, all in the flood's first
// moments. With the default ring buffer most of that burst is lost (and
// counted); with a 16 MiB ring none is, and events/s is the rate the
// engine describes and writes them. ports=1 hits one rule. One op is one
// connect; 200000 connects stay within one rate-limit window.
//
//	go test -run '^$' -bench DeniedConnectFlood -benchtime 200000x ./test/engine/
func BenchmarkDeniedConnectFlood(b *testing.B) {
	for _, c := range []struct {
		name      string
		ports     int
		ringBytes int // 0: the engine's default
	}{
		{"ports=4096/ring=default", 4096, 0},
		{"ports=4096/ring=16MiB", 4096, 16 << 20},
		{"ports=1/ring=default", 1, 0},
	} {
		b.Run(c.name, func(b *testing.B) { benchFlood(b, c.ports, c.ringBytes) })
	}
}

func benchFlood(b *testing.B, ports, ringBytes int) {
	const firstPort = 40000
	args := []string{"--events-max-bytes", strconv.Itoa(1 << 30), "--event-summary-interval", "1h"}
	if ringBytes > 0 {
		args = append(args, "--events-ring-bytes", strconv.Itoa(ringBytes))
	}
	e := harness.StartEngine(b, harness.Options{
		Policies: map[string]string{"flood.yaml": floodPolicy(firstPort, ports)},
		Args:     args,
	})
	cg := harness.NewCgroup(b)
	out, err := e.CLI("containers", "add", "--id", "flooder", "--cgroup-path", cg.Dir, "--namespace", "shop")
	if err != nil {
		b.Fatalf("containers add: %v\n%s", err, out)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d 127.0.0.1:%d %d", envFlood, b.N, firstPort, ports))

	// The events file's size, watched from the flood's start: its last
	// change is when the engine wrote its last event line (summaries come
	// only at the engine's exit).
	lastWrite := make(chan time.Time, 1)
	stopWatch := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go watchGrowth(e.EventsFile, start, stopWatch, lastWrite)
	res := cg.RunCmd(b, cmd)
	flood := time.Since(start)
	b.StopTimer()
	refused, err := strconv.ParseUint(strings.TrimSpace(res.Stdout), 10, 64)
	if res.ExitCode != 0 || err != nil || refused != uint64(b.N) {
		close(stopWatch)
		b.Fatalf("flood: %v; want all %d connects refused", res, b.N)
	}
	kernel := status(b, e).Counters
	close(stopWatch)
	written := <-lastWrite
	// The engine's last summary, at its exit, covers every counter.
	e.Terminate(b)
	a := accountFlood(b, e.EventsFile, cg.ID)
	if a.denials != refused || a.totals != refused {
		b.Errorf("summaries count %d denials (latest totals %d), the flooder was refused %d times", a.denials, a.totals, refused)
	}
	if a.written != a.sent {
		b.Errorf("%d connect-refused lines written, the kernel sent %d events: %d unaccounted", a.written, a.sent, int64(a.sent)-int64(a.written))
	}
	if a.denials != a.sent+a.suppressed+a.lost {
		b.Errorf("denials %d != events %d + suppressed %d + lost %d", a.denials, a.sent, a.suppressed, a.lost)
	}
	if kernel.ConnectRefused != refused || kernel.EventsLost < a.lost {
		b.Errorf("kernel counters: %d refused (want %d), %d events lost (want at least %d)", kernel.ConnectRefused, refused, kernel.EventsLost, a.lost)
	}
	b.ReportMetric(float64(refused)/flood.Seconds(), "denials/s")
	b.ReportMetric(float64(a.written)/written.Sub(start).Seconds(), "events/s")
	b.ReportMetric(float64(a.written), "events")
	b.ReportMetric(float64(a.suppressed), "suppressed")
	b.ReportMetric(float64(a.lost), "lost")
}

// watchGrowth sends the last time path grew, once it has not grown for a
// second after stop closed (the engine has drained the ring buffer).
func watchGrowth(path string, start time.Time, stop <-chan struct{}, last chan<- time.Time) {
	size, grew := int64(0), start
	stopped := false
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() != size {
			size, grew = fi.Size(), time.Now()
		}
		select {
		case <-stop:
			stopped = true
		default:
		}
		if stopped && time.Since(grew) > time.Second {
			last <- grew
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
