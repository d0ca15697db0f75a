package nri_test

import (
	"slices"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkCreateStartContainer measures CRI CreateContainer+StartContainer
// of one container, first with no NRI plugin connected, then with
// holdfast-nri registering every container with a real engine, and reports
// the p50 and p99 of both and what the plugin adds. Each sample's container
// is removed outside the measurement. Run with a fixed count:
//
//	go test ./test/nri -run '^$' -bench CreateStartContainer -benchtime 200x
func BenchmarkCreateStartContainer(b *testing.B) {
	c := sharedContainerd(b)
	e := harness.StartEngine(b, harness.Options{Policies: shopPolicy(9)})
	p := c.runPod(b, "shop", "bench-0", map[string]string{"app": "web"})

	measure := func(name string) []time.Duration {
		samples := make([]time.Duration, 0, b.N)
		for range b.N {
			start := time.Now()
			id := p.create(b, name, "/bin/sleep", "999")
			if err := p.start(id); err != nil {
				b.Fatalf("start container: %v", err)
			}
			samples = append(samples, time.Since(start))
			p.removeContainer(b, id)
		}
		slices.Sort(samples)
		return samples
	}
	b.ResetTimer()
	without := measure("without")
	plugin := startPlugin(b, c, e.Socket)
	with := measure("with")
	b.StopTimer()
	plugin.stop()

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p50w, p99w := percentile(without, 50), percentile(without, 99)
	p50, p99 := percentile(with, 50), percentile(with, 99)
	b.ReportMetric(ms(p50w), "p50-ms-without")
	b.ReportMetric(ms(p99w), "p99-ms-without")
	b.ReportMetric(ms(p50), "p50-ms-with")
	b.ReportMetric(ms(p99), "p99-ms-with")
	b.ReportMetric(ms(p50-p50w), "added-p50-ms")
	b.ReportMetric(ms(p99-p99w), "added-p99-ms")
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, pct int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*pct + 99) / 100
	return sorted[max(i-1, 0)]
}
