package hook_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// BenchmarkContainerCreate measures what the hook adds to container
// creation: the wall time of `runc create` (where createContainer hooks run)
// and of `runc delete` (poststop, after the container ran /bin/true and
// exited) for a container with no hook, with
// a trivial static hook (/bin/true) at the same stages, and with
// holdfast-oci-hook registering with a live engine. Variants run
// interleaved, in rotating order, so machine noise hits all of them alike.
// Reported per variant: p50 and p99 in ms, and for the hooks, the p50 and
// p99 added over no hook. Use enough iterations for a p99:
//
//	go test -run '^$' -bench BenchmarkContainerCreate -benchtime 300x ./test/hook/
func BenchmarkContainerCreate(b *testing.B) {
	r := newRuncEnv(b)
	bin := hookBinary(b)
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	logPath := b.TempDir() + "/hook.log"

	static := map[string][]runcHook{
		"createContainer": {{Path: "/bin/true", Args: []string{"true"}}},
		"poststop":        {{Path: "/bin/true", Args: []string{"true"}}},
	}
	variants := []struct {
		name string
		ctr  *container
	}{
		{"nohook", r.bundle(b, bundleOpts{Args: []string{"/bin/true"}, Annotations: lockedAnnotations("bench")})},
		{"static", r.bundle(b, bundleOpts{Args: []string{"/bin/true"}, Annotations: lockedAnnotations("bench"), Hooks: static})},
		{"holdfast", r.bundle(b, bundleOpts{Args: []string{"/bin/true"}, Annotations: lockedAnnotations("bench"),
			Hooks: hookEntries(bin, "createContainer", e.Socket, logPath, "--fail-mode", "closed")})},
	}
	creates := make([][]time.Duration, len(variants))
	deletes := make([][]time.Duration, len(variants))
	// runc's output goes to a file opened once, so timing covers runc only.
	out, err := os.Create(b.TempDir() + "/runc.out")
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	timed := func(c *container, args ...string) time.Duration {
		cmd := exec.Command(c.env.runc, append([]string{"--root", c.env.root}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, readFile(b, out.Name()))
		}
		return d
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range variants {
			j := (i + k) % len(variants)
			c := variants[j].ctr
			creates[j] = append(creates[j], timed(c, "create", "--bundle", c.Bundle, c.ID))
			b.StopTimer()
			c.runc(b, "start", c.ID)
			c.waitStopped(b)
			b.StartTimer()
			deletes[j] = append(deletes[j], timed(c, "delete", c.ID))
		}
	}
	b.StopTimer()

	// Every holdfast create must really have registered, or the numbers
	// would measure a fail-open shortcut.
	var inHook []time.Duration // from the hook's start of work to its decision
	steps := map[string][]time.Duration{}
	for _, l := range hookLog(b, logPath) {
		if l["outcome"] == "registered" {
			us, _ := l["elapsedUs"].(float64)
			inHook = append(inHook, time.Duration(us)*time.Microsecond)
			stepsUs, _ := l["stepsUs"].(map[string]any)
			for name, v := range stepsUs {
				f, _ := v.(float64)
				steps[name] = append(steps[name], time.Duration(f)*time.Microsecond)
			}
		}
	}
	if len(inHook) != b.N {
		b.Fatalf("hook registered %d of %d containers", len(inHook), b.N)
	}
	base50, base99 := percentile(creates[0], 50), percentile(creates[0], 99)
	b.Logf("runc create latency over %d interleaved runs (ms):", b.N)
	b.Logf("%-9s %8s %8s %10s %10s %12s", "variant", "p50", "p99", "p50 added", "p99 added", "delete p50")
	for j, v := range variants {
		p50, p99 := percentile(creates[j], 50), percentile(creates[j], 99)
		b.ReportMetric(ms(p50), v.name+"-create-p50-ms")
		b.ReportMetric(ms(p99), v.name+"-create-p99-ms")
		if j > 0 {
			b.ReportMetric(ms(p50-base50), v.name+"-added-p50-ms")
			b.ReportMetric(ms(p99-base99), v.name+"-added-p99-ms")
		}
		b.Logf("%-9s %8.2f %8.2f %10.2f %10.2f %12.2f", v.name, ms(p50), ms(p99), ms(p50-base50), ms(p99-base99), ms(percentile(deletes[j], 50)))
	}
	b.ReportMetric(ms(percentile(inHook, 50)), "holdfast-inhook-p50-ms")
	b.Logf("inside holdfast-oci-hook (state read to engine reply): p50 %.2f p99 %.2f", ms(percentile(inHook, 50)), ms(percentile(inHook, 99)))
	for _, name := range []string{"state", "config", "cgroup", "engine"} {
		if len(steps[name]) > 0 {
			b.Logf("  step %-7s p50 %.2f p99 %.2f", name, ms(percentile(steps[name], 50)), ms(percentile(steps[name], 99)))
		}
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100 // nearest rank
	if i < 1 {
		i = 1
	}
	return s[i-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func readFile(b testing.TB, path string) string {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return string(data)
}
