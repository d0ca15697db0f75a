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
// full); any other outcome fails the benchmark. ports=4096 spreads the
// flood over 4096 rules (each with its own rate limit, so up to 5 x 4096
// events per 10 s window); ports=1 hits one rule. One op is one connect.
//
//	go test -run '^$' -bench DeniedConnectFlood -benchtime 2000000x ./test/engine/
func BenchmarkDeniedConnectFlood(b *testing.B) {
	for _, ports := range []int{4096, 1} {
		b.Run(fmt.Sprintf("ports=%d", ports), func(b *testing.B) { benchFlood(b, ports) })
	}
}

func benchFlood(b *testing.B, ports int) {
	const firstPort = 40000
	e := harness.StartEngine(b, harness.Options{
		Policies: map[string]string{"flood.yaml": floodPolicy(firstPort, ports)},
		Args:     []string{"--events-max-bytes", strconv.Itoa(1 << 30), "--event-summary-interval", "500ms"},
	})
	cg := harness.NewCgroup(b)
	out, err := e.CLI("containers", "add", "--id", "flooder", "--cgroup-path", cg.Dir, "--namespace", "shop")
	if err != nil {
		b.Fatalf("containers add: %v\n%s", err, out)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d 127.0.0.1:%d %d", envFlood, b.N, firstPort, ports))

	b.ResetTimer()
	start := time.Now()
	res := cg.RunCmd(b, cmd)
	flood := time.Since(start)
	b.StopTimer()
	refused, err := strconv.ParseUint(strings.TrimSpace(res.Stdout), 10, 64)
	if res.ExitCode != 0 || err != nil || refused != uint64(b.N) {
		b.Fatalf("flood: %v; want all %d connects refused", res, b.N)
	}

	// Poll the events file until the summaries cover every refusal and
	// the event lines stop growing; the last growth ends the engine's work.
	var a floodAccount
	lastWrite, lastWritten := start, uint64(0)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		a = accountFlood(b, e.EventsFile, cg.ID)
		if a.written != lastWritten {
			lastWrite, lastWritten = time.Now(), a.written
		}
		if a.totals >= refused && a.written == a.sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.denials != refused || a.totals != refused {
		b.Errorf("summaries count %d denials (latest totals %d), the flooder was refused %d times", a.denials, a.totals, refused)
	}
	if a.written != a.sent {
		b.Errorf("%d connect-refused lines written, the kernel sent %d events: %d unaccounted", a.written, a.sent, int64(a.sent)-int64(a.written))
	}
	if a.denials != a.sent+a.suppressed+a.lost {
		b.Errorf("denials %d != events %d + suppressed %d + lost %d", a.denials, a.sent, a.suppressed, a.lost)
	}
	if kernel := status(b, e).Counters; kernel.ConnectRefused != refused || kernel.EventsLost < a.lost {
		b.Errorf("kernel counters: %d refused (want %d), %d events lost (want at least %d)", kernel.ConnectRefused, refused, kernel.EventsLost, a.lost)
	}
	b.ReportMetric(float64(refused)/flood.Seconds(), "denials/s")
	b.ReportMetric(float64(a.written)/lastWrite.Sub(start).Seconds(), "events/s")
	b.ReportMetric(float64(a.written), "events")
	b.ReportMetric(float64(a.suppressed), "suppressed")
	b.ReportMetric(float64(a.lost), "lost")
}
