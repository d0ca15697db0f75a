package nri_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkCreateStartContainer measures CRI CreateContainer+StartContainer
// of one container with no NRI plugin connected and with holdfast-nri
// registering every container with a real engine (blocks of 10 samples
// each, alternating), and reports the p50 and p99 of both and what the
// plugin adds. Each sample's container is removed outside the measurement.
// Run with a fixed count:
//
//	go test ./test/nri -run '^$' -bench CreateStartContainer -benchtime 200x
func BenchmarkCreateStartContainer(b *testing.B) {
	c := sharedContainerd(b)
	e := harness.StartEngine(b, harness.Options{Policies: shopPolicy(9)})
	p := c.runPod(b, "shop", "bench-0", map[string]string{"app": "web"})

	sample := func(name string) time.Duration {
		start := time.Now()
		id := p.create(b, name, "/bin/sleep", "999")
		if err := p.start(id); err != nil {
			b.Fatalf("start container: %v", err)
		}
		d := time.Since(start)
		p.removeContainer(b, id)
		return d
	}
	// Blocks with and without the plugin alternate, so drift in the
	// machine's load hits both alike.
	const block = 10
	var with, without, handled []time.Duration
	var plugin *plugin
	b.ResetTimer()
	for i := range b.N {
		withPlugin := (i/block)%2 == 1
		switch {
		case withPlugin && plugin == nil:
			plugin = startPlugin(b, c, e.Socket)
		case !withPlugin && plugin != nil:
			handled = append(handled, plugin.registerTimes(b)...)
			plugin.stop()
			plugin = nil
		}
		if withPlugin {
			with = append(with, sample("with"))
		} else {
			without = append(without, sample("without"))
		}
	}
	b.StopTimer()
	if plugin != nil {
		handled = append(handled, plugin.registerTimes(b)...)
		plugin.stop()
	}
	if len(with) == 0 {
		return // the framework's first run with b.N = 1; the real one follows
	}
	slices.Sort(with)
	slices.Sort(without)
	slices.Sort(handled)

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p50w, p99w := percentile(without, 50), percentile(without, 99)
	p50, p99 := percentile(with, 50), percentile(with, 99)
	b.ReportMetric(ms(p50w), "p50-ms-without")
	b.ReportMetric(ms(p99w), "p99-ms-without")
	b.ReportMetric(ms(p50), "p50-ms-with")
	b.ReportMetric(ms(p99), "p99-ms-with")
	b.ReportMetric(ms(p50-p50w), "added-p50-ms")
	b.ReportMetric(ms(p99-p99w), "added-p99-ms")
	// The plugin's own StartContainer handling, engine call included.
	b.ReportMetric(ms(percentile(handled, 50)), "plugin-p50-ms")
	b.ReportMetric(ms(percentile(handled, 99)), "plugin-p99-ms")
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, pct int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*pct + 99) / 100
	return sorted[max(i-1, 0)]
}

// registerTimes reads how long each StartContainer took the plugin, from
// its "registered ... took=" log lines.
func (p *plugin) registerTimes(b *testing.B) []time.Duration {
	var out []time.Duration
	for _, line := range strings.Split(p.log(), "\n") {
		if !strings.Contains(line, "msg=registered ") {
			continue
		}
		_, took, ok := strings.Cut(line, " took=")
		if !ok {
			b.Fatalf("plugin log line without took=: %s", line)
		}
		d, err := time.ParseDuration(strings.Fields(took)[0])
		if err != nil {
			b.Fatalf("plugin log line %q: %v", line, err)
		}
		out = append(out, d)
	}
	return out
}
