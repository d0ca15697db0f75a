package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// scaleEngine starts an engine (info logging, as on a node) with n
// registered containers, each in a cgroup of its own below parent, in 100
// pods of labels the lockdown policy selects one in two of.
func scaleEngine(b *testing.B, n int) (*harness.Engine, harness.Cgroup) {
	b.Helper()
	e := harness.StartEngine(b, harness.Options{
		Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", "/nonexistent/denied", "127.0.0.1:9")},
		Args:     []string{"--log-level", "info"},
	})
	parent := harness.NewCgroup(b)
	registerMany(b, e, parent, "ctr", 0, n)
	return e, parent
}

// registerMany registers containers prefix-first..prefix-(first+n-1) from 8
// concurrent clients, each in a new cgroup below parent.
func registerMany(b *testing.B, e *harness.Engine, parent harness.Cgroup, prefix string, first, n int) {
	b.Helper()
	cgs := makeCgroups(b, parent, prefix, first, n)
	err := concurrently(8, n, func(client *api.Client, i int) error {
		_, err := client.Register(context.Background(), scaleContainer(prefix, first+i, cgs[i]))
		return err
	}, e)
	if err != nil {
		b.Fatal(err)
	}
}

func makeCgroups(b *testing.B, parent harness.Cgroup, prefix string, first, n int) []harness.Cgroup {
	b.Helper()
	cgs := make([]harness.Cgroup, n)
	for i := range n {
		dir := filepath.Join(parent.Dir, fmt.Sprintf("%s-%d", prefix, first+i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		id, err := cgroup.ID(dir)
		if err != nil {
			b.Fatal(err)
		}
		cgs[i] = harness.Cgroup{Dir: dir, ID: id}
	}
	b.Cleanup(func() {
		for i := range n {
			os.Remove(filepath.Join(parent.Dir, fmt.Sprintf("%s-%d", prefix, first+i)))
		}
	})
	return cgs
}

// scaleContainer names its cgroup by path and ID, as the OCI hook, the NRI
// plugin and the CRI reconcile do: a restart checks each path still holds
// that cgroup.
func scaleContainer(prefix string, i int, cg harness.Cgroup) api.Container {
	app := "web"
	if i%2 == 1 {
		app = "batch"
	}
	pod := fmt.Sprintf("pod-%d", i%100)
	return api.Container{ID: fmt.Sprintf("%s-%d", prefix, i), CgroupID: cg.ID, CgroupPath: cg.Dir, Namespace: "shop", Pod: pod, PodUID: "uid-" + pod,
		Labels: map[string]string{"app": app, "tier": "front"}, Name: "main", Image: "busybox:latest", Source: "nri"}
}

// concurrently runs f for 0..n-1 on workers clients, each keeping its
// connection, as registrars do.
func concurrently(workers, n int, f func(*api.Client, int) error, e *harness.Engine) error {
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := e.Client()
			defer client.Close()
			for i := w; i < n; i += workers {
				if err := f(client, i); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// vmRSS is a process's resident set in MB.
func vmRSS(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// cpuTime is the CPU time a process has used, in ms (10 ms resolution).
func cpuTime(b *testing.B, pid int) float64 {
	b.Helper()
	d, err := harness.ProcessCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(d) / float64(time.Millisecond)
}

// BenchmarkRestartReady measures an engine restart (kill -9, start) with
// n registered containers: time from the process's start until it answers
// a request, and its resident memory once ready and a second later.
//
//	go test -run '^$' -bench RestartReady -benchtime 10x ./test/engine/
func BenchmarkRestartReady(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			e, _ := scaleEngine(b, n)
			var readyMs, cpuMs, rss, rssLater []float64
			for range b.N {
				e.Kill9(b)
				start := time.Now()
				e.Launch(b)
				waitAnswers(b, e)
				readyMs = append(readyMs, float64(time.Since(start).Microseconds())/1000)
				rss = append(rss, vmRSS(b, e.PID()))
				cpuMs = append(cpuMs, cpuTime(b, e.PID()))
				time.Sleep(time.Second)
				rssLater = append(rssLater, vmRSS(b, e.PID()))
			}
			b.ReportMetric(median(readyMs), "ms-to-ready")
			b.ReportMetric(median(cpuMs), "cpu-ms-to-ready")
			b.ReportMetric(median(rss), "MB-rss-at-ready")
			b.ReportMetric(median(rssLater), "MB-rss-1s-later")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// waitAnswers polls the engine with a cheap request (unregistering an
// unknown id) until it is answered: the engine serves requests only once
// its registry, policies and maps are reconciled.
func waitAnswers(b *testing.B, e *harness.Engine) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := (&api.Client{Socket: e.Socket}).Unregister(ctx, "no-such-container")
		cancel()
		if errors.Is(err, api.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("engine did not answer within 30s: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkConcurrentRegistrations measures registrations from 8
// concurrent registrars (a connection each) against an engine holding
// 10,000 containers: throughput and the p50/p99 of one registration. With
// live-process, each new container has a process in its cgroup, which the
// engine checks the cgroup against and resolves the exec rules through.
// rate=max registers as fast as the registrars go (throughput; its latency
// is mostly queueing on a saturated engine); rate=2000 paces them at the
// target rate, for the latency a registrar sees at that load.
//
//	go test -run '^$' -bench ConcurrentRegistrations -benchtime 10000x ./test/engine/
func BenchmarkConcurrentRegistrations(b *testing.B) {
	// The registrars here share this process with 10,000 cgroups' worth of
	// test state; its own collections would count in their latency.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	e, parent := scaleEngine(b, 10000)
	for _, live := range []bool{false, true} {
		// rate 0: as fast as the registrars can go (the throughput); 2000:
		// the target rate, paced (the latency a registrar sees then).
		for _, rate := range []int{0, 2000} {
			b.Run(fmt.Sprintf("live-process=%v/rate=%s", live, rateName(rate)), func(b *testing.B) {
				benchRegistrations(b, e, parent, live, rate)
			})
		}
	}
}

func rateName(rate int) string {
	if rate == 0 {
		return "max"
	}
	return strconv.Itoa(rate)
}

// benchRegistrations registers b.N new containers from 8 registrars. With a
// rate, registration i is due at start + i/rate, and its latency counts from
// then: a registration kept waiting behind a slow one is not left out.
func benchRegistrations(b *testing.B, e *harness.Engine, parent harness.Cgroup, live bool, rate int) {
	prefix := fmt.Sprintf("new-%v-%d", live, rate)
	cgs := makeCgroups(b, parent, prefix, 0, b.N)
	pids := make([]int, b.N)
	if live {
		for i := range b.N {
			pids[i] = cgs[i].Start(b, "/bin/sleep", "3600").Process.Pid
		}
	}
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	start := time.Now()
	err := concurrently(8, b.N, func(client *api.Client, i int) error {
		c := scaleContainer(prefix, i, cgs[i])
		c.Pid = pids[i]
		t0 := time.Now()
		if rate > 0 {
			t0 = start.Add(time.Duration(i) * time.Second / time.Duration(rate))
			time.Sleep(time.Until(t0))
		}
		_, err := client.Register(context.Background(), c)
		lat[i] = time.Since(t0)
		return err
	}, e)
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	// Back to 10,000 registered for the next run, whose figures are then
	// for the same engine.
	if err := concurrently(8, b.N, func(client *api.Client, i int) error {
		return client.Unregister(context.Background(), scaleContainer(prefix, i, cgs[i]).ID)
	}, e); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registrations/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
