package hook_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
	"github.com/holdfast-dev/holdfast/hook/hooksd"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/lifetimes"
)

// BenchmarkContainerCreate measures what the hook adds to container
// creation. runc waits for each hook it runs, so what a hook adds to
// `runc create` is its lifetime there, from runc's fork to its exit, which
// the kernel's sched tracepoints give per run (package lifetimes): that is
// what the target is judged on. The wall time of `runc create` (where
// createRuntime hooks run) and of `runc delete` (poststop, after the
// container ran /bin/true and exited) is reported too, but its run-to-run
// noise is larger than a fast hook: the control variant, the empty Go hook
// again from a copy of its own, shows how far two identical hooks differ
// there in the same run.
//
// Variants: no hook, a trivial static C hook and an empty static Go hook
// (each reads the state and exits) at the same stages, holdfast-oci-hook
// registering with a live engine, with its engine down (the slow path), and
// against an engine that answers at once and does nothing (its own process
// and the round trip, without the engine's work). They run in an order
// shuffled each iteration, so machine noise and what ran just before hit
// all of them alike. Reported per variant: p50, p90 and p99 in ms and what
// each adds over the empty Go hook, the floor for a hook written in Go;
// then the hook's own phases from its decision log. Use enough iterations
// for a p99:
//
//	go test -run '^$' -bench BenchmarkContainerCreate -benchtime 300x -v ./test/hook/
func BenchmarkContainerCreate(b *testing.B) {
	r := newRuncEnv(b)
	bin := hookBinary(b)
	goHook := harness.Build(b, "./test/hook/emptyhook")
	goHookCopy := filepath.Join(b.TempDir(), "emptyhook-copy")
	if err := os.WriteFile(goHookCopy, []byte(readFile(b, goHook)), 0o755); err != nil {
		b.Fatal(err)
	}
	cHook := filepath.Join(b.TempDir(), "emptyhook-c")
	src, err := filepath.Abs("testdata/emptyhook.c")
	if err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(needTool(b, "cc"), "-static", "-O2", "-o", cHook, src).CombinedOutput(); err != nil {
		b.Fatalf("build static C hook: %v\n%s", err, out)
	}
	// The engine at its installed log level: debug lines cost each registration.
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy},
		Args: []string{"--log-level", "info"}})
	down := harness.StartEngine(b, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy}})
	down.Terminate(b)
	noop := startNoopEngine(b)
	logPath := b.TempDir() + "/hook.log"
	downLog := b.TempDir() + "/hook-down.log"
	noopLog := b.TempDir() + "/hook-noop.log"

	// Every hook runs at the stage holdfast install crio installs at.
	stage := string(hooksd.DefaultStage)
	trivial := func(path string, env ...string) map[string][]runcHook {
		return map[string][]runcHook{
			stage:      {{Path: path, Args: []string{filepath.Base(path)}, Env: env}},
			"poststop": {{Path: path, Args: []string{filepath.Base(path)}, Env: env}},
		}
	}
	installed := func(socket, log string) map[string][]runcHook {
		// Installed as holdfast install crio installs it: settings in the
		// config file next to the binary, which every run reads.
		return installedHooks(b, bin, hookconfig.Config{Socket: socket, Log: log,
			Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	}
	type variant struct {
		name string
		ctr  *container
		hook string // run at create; "" for none
	}
	newVariant := func(name string, hooks map[string][]runcHook) variant {
		v := variant{name: name, ctr: r.bundle(b, bundleOpts{Args: []string{"/bin/true"}, Annotations: lockedAnnotations("bench"), Hooks: hooks})}
		if h := hooks[stage]; len(h) > 0 {
			v.hook = h[0].Path
		}
		return v
	}
	variants := []variant{
		newVariant("nohook", nil),
		newVariant("static-c", trivial(cHook)),
		newVariant("static-go", trivial(goHook)),
		// The floor again with the environment holdfast-oci-hook is
		// installed with (hooksd.HookEnv).
		newVariant("static-go-env", trivial(goHook, hooksd.HookEnv...)),
		// The control: the floor once more, from its own copy.
		newVariant("static-go-copy", trivial(goHookCopy)),
		newVariant("holdfast", installed(e.Socket, logPath)),
		newVariant("engine-down", hookEntries(bin, stage, down.Socket, downLog, "--fail-mode", "closed",
			"--state-dir", down.StateDir, "--bpf-dir", down.BPFDir, "--holdfast-binary", down.Bin)),
		newVariant("noop-engine", installed(noop, noopLog)),
	}
	const goFloor, live, noopEngine = 2, 5, 7 // static-go, holdfast, noop-engine
	var hookPaths []string
	for _, v := range variants {
		if v.hook != "" {
			hookPaths = append(hookPaths, v.hook)
		}
	}
	tracer, err := lifetimes.Start(append(hookPaths, r.runc)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tracer.Stop() }) // after a failure; Stop again returns the first's result
	type window struct{ from, to time.Duration }
	creates := make([][]time.Duration, len(variants))
	windows := make([][]window, len(variants))
	deletes := make([][]time.Duration, len(variants))
	// runc's output goes to a file opened once, so timing covers runc only.
	out, err := os.Create(b.TempDir() + "/runc.out")
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	timed := func(c *container, args ...string) (time.Duration, window) {
		cmd := exec.Command(c.env.runc, append([]string{"--root", c.env.root}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		from, start := lifetimes.Now(), time.Now()
		err := cmd.Run()
		d, to := time.Since(start), lifetimes.Now()
		if err != nil {
			b.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, readFile(b, out.Name()))
		}
		return d, window{from, to}
	}

	order := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, j := range order.Perm(len(variants)) {
			c := variants[j].ctr
			d, w := timed(c, "create", "--bundle", c.Bundle, c.ID)
			creates[j], windows[j] = append(creates[j], d), append(windows[j], w)
			b.StopTimer()
			c.runc(b, "start", c.ID)
			c.waitStopped(b)
			b.StartTimer()
			d, _ = timed(c, "delete", c.ID)
			deletes[j] = append(deletes[j], d)
		}
	}
	b.StopTimer()
	spans, err := tracer.Stop()
	if err != nil {
		b.Fatal(err)
	}
	// Each create ran its hook once, and only that run forked within it.
	// What runc did after the hook exited is timed too: a hook whose engine
	// kept a CPU busy after answering would slow runc there.
	lives := make([][]time.Duration, len(variants))
	after := make([][]time.Duration, len(variants))
	for j, v := range variants {
		if v.hook == "" {
			continue
		}
		for i, w := range windows[j] {
			in := lifetimes.In(spans, v.hook, w.from, w.to)
			runc := lifetimes.In(spans, r.runc, w.from, w.to)
			if len(in) != 1 || len(runc) != 1 {
				b.Fatalf("%s: create %d ran %d hook and %d runc processes, want 1 each: %+v %+v", v.name, i, len(in), len(runc), in, runc)
			}
			lives[j] = append(lives[j], in[0].Lifetime())
			after[j] = append(after[j], runc[0].Exit-in[0].Exit)
		}
	}

	over := func(x, floor []time.Duration, p int) float64 { return ms(percentile(x, p) - percentile(floor, p)) }
	b.Logf("the hook's lifetime in runc create (fork to exit), what it adds to runc create, over %d runs (ms):", b.N)
	b.Logf("%-15s %6s %6s %6s | %-19s | %s", "variant", "p50", "p90", "p99", "over Go p50/p90/p99", "runc after the hook p50, over Go")
	for j, v := range variants {
		if v.hook == "" {
			continue
		}
		b.Logf("%-15s %6.2f %6.2f %6.2f | %5.2f %5.2f %5.2f | %.2f %5.2f", v.name, ms(percentile(lives[j], 50)), ms(percentile(lives[j], 90)),
			ms(percentile(lives[j], 99)), over(lives[j], lives[goFloor], 50), over(lives[j], lives[goFloor], 90), over(lives[j], lives[goFloor], 99),
			ms(percentile(after[j], 50)), over(after[j], after[goFloor], 50))
		if j > goFloor {
			b.ReportMetric(over(lives[j], lives[goFloor], 50), v.name+"-hook-over-go-p50-ms")
			b.ReportMetric(over(lives[j], lives[goFloor], 90), v.name+"-hook-over-go-p90-ms")
			b.ReportMetric(over(after[j], after[goFloor], 50), v.name+"-runc-after-hook-over-go-p50-ms")
		}
	}
	b.Logf("of holdfast's p50 over Go: %.2f ms its own process and the round trip (noop-engine), %.2f ms the engine's work",
		over(lives[noopEngine], lives[goFloor], 50), ms(percentile(lives[live], 50)-percentile(lives[noopEngine], 50)))

	b.Logf("runc create wall time over the same runs (ms); the control static-go-copy shows this method's noise:")
	b.Logf("%-15s %7s %7s %7s | %-17s | %-17s | %s", "variant", "p50", "p90", "p99", "added p50/p90/p99", "over Go p50/p90/p99", "delete p50")
	for j, v := range variants {
		var row [3]float64
		for k, p := range []int{50, 90, 99} {
			row[k] = ms(percentile(creates[j], p))
			b.ReportMetric(row[k], fmt.Sprintf("%s-create-p%d-ms", v.name, p))
		}
		added := func(base int) string {
			return fmt.Sprintf("%5.2f %5.2f %5.2f", over(creates[j], creates[base], 50), over(creates[j], creates[base], 90), over(creates[j], creates[base], 99))
		}
		b.Logf("%-15s %7.2f %7.2f %7.2f | %s | %s | %.2f", v.name, row[0], row[1], row[2], added(0), added(goFloor), ms(percentile(deletes[j], 50)))
	}
	// Every holdfast create must really have registered (through the engine
	// or by itself), or the numbers would measure a fail-open shortcut.
	hookPhases(b, logPath, "registered", "live engine")
	hookPhases(b, downLog, "registered-offline", "engine down")
	hookPhases(b, noopLog, "registered", "noop engine")
}

// startNoopEngine runs ./test/hook/noopengine and returns its socket.
func startNoopEngine(b *testing.B) string {
	b.Helper()
	socket := filepath.Join(b.TempDir(), "noop.sock")
	cmd := exec.Command(harness.Build(b, "./test/hook/noopengine"), socket)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return socket
		}
		if time.Now().After(deadline) {
			b.Fatalf("noop engine: no socket at %s after 5s", socket)
		}
	}
}

// hookPhases reports the hook's own time and its steps, from its decision
// log, over the decisions with outcome; there must be one per iteration.
func hookPhases(b *testing.B, logPath, outcome, what string) {
	b.Helper()
	var inHook []time.Duration // from the state read to the decision
	steps := map[string][]time.Duration{}
	for _, l := range hookLog(b, logPath) {
		if l["outcome"] != outcome {
			continue
		}
		us, _ := l["elapsedUs"].(float64)
		inHook = append(inHook, time.Duration(us)*time.Microsecond)
		stepsUs, _ := l["stepsUs"].(map[string]any)
		for name, v := range stepsUs {
			f, _ := v.(float64)
			steps[name] = append(steps[name], time.Duration(f)*time.Microsecond)
		}
	}
	if len(inHook) != b.N {
		b.Fatalf("hook (%s) logged %d %q decisions for %d containers", what, len(inHook), outcome, b.N)
	}
	b.Logf("inside holdfast-oci-hook, %s (state read to decision): p50 %.2f p90 %.2f p99 %.2f", what,
		ms(percentile(inHook, 50)), ms(percentile(inHook, 90)), ms(percentile(inHook, 99)))
	for _, name := range slices.Sorted(maps.Keys(steps)) {
		b.Logf("  step %-8s p50 %.2f p90 %.2f p99 %.2f", name, ms(percentile(steps[name], 50)), ms(percentile(steps[name], 90)), ms(percentile(steps[name], 99)))
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

// BenchmarkHookDirect runs holdfast-oci-hook at createRuntime by itself, not
// under runc, against a live engine, interleaved with the empty static Go
// hook: the wall time from exec to exit of each, and what the hook adds.
// The hook is installed as holdfast install crio installs it (config file
// next to the binary) and both run with the hooks.d entry's arguments and
// environment, as a runtime runs them. Each run registers a new container
// (a process in a cgroup of its own, one exec rule resolved in its root);
// it is unregistered untimed.
//
//	go test -run '^$' -bench HookDirect -benchtime 500x ./test/hook/
func BenchmarkHookDirect(b *testing.B) {
	bin := hookBinary(b)
	goHook := harness.Build(b, "./test/hook/emptyhook")
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"locked.yaml": lockedPolicy},
		Args: []string{"--log-level", "info"}})
	cg := harness.NewCgroup(b)
	sleeper := cg.Start(b, "sleep", "1000000")
	bundle := harness.OCIBundle(b, lockedAnnotations("direct"), "")
	logPath := b.TempDir() + "/hook.log"
	client := e.Client()
	defer client.Close()
	entry := installedHooks(b, bin, hookconfig.Config{Socket: e.Socket, Log: logPath,
		Settings: registrar.Settings{FailMode: registrar.FailClosed}})["createRuntime"][0]

	cpu := map[string]time.Duration{}
	run := func(path, stdin string) time.Duration {
		cmd := exec.Command(path)
		cmd.Args = append([]string{filepath.Base(path)}, entry.Args[1:]...)
		if path == goHook {
			cmd.Args = cmd.Args[:1]
		}
		cmd.Env = entry.Env
		cmd.Stdin = strings.NewReader(stdin)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v\n%s", path, err, out)
		}
		cpu[path] += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return d
	}
	var empty, hooked []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("direct-%d", i)
		state := harness.OCIState(id, "creating", sleeper.Process.Pid, bundle, nil)
		if i%2 == 0 {
			empty = append(empty, run(goHook, state))
			hooked = append(hooked, run(entry.Path, state))
		} else {
			hooked = append(hooked, run(entry.Path, state))
			empty = append(empty, run(goHook, state))
		}
		b.StopTimer()
		if err := client.Unregister(context.Background(), id); err != nil {
			b.Fatalf("unregister %s: %v", id, err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	for _, p := range []int{50, 90, 99} {
		b.ReportMetric(ms(percentile(empty, p)), fmt.Sprintf("empty-p%d-ms", p))
		b.ReportMetric(ms(percentile(hooked, p)), fmt.Sprintf("hook-p%d-ms", p))
		b.ReportMetric(ms(percentile(hooked, p)-percentile(empty, p)), fmt.Sprintf("added-p%d-ms", p))
	}
	// The difference within each pair leaves out the machine's drift.
	paired := make([]time.Duration, b.N)
	for i := range paired {
		paired[i] = hooked[i] - empty[i]
	}
	b.ReportMetric(ms(percentile(paired, 50)), "paired-added-p50-ms")
	// CPU time says what each process itself does, which the machine's
	// load moves far less than wall time.
	b.ReportMetric(ms(cpu[goHook])/float64(b.N), "empty-cpu-ms")
	b.ReportMetric(ms(cpu[entry.Path])/float64(b.N), "hook-cpu-ms")
	hookPhases(b, logPath, "registered", "run directly")
}

// installedHooks installs bin with hooksd.Install, as holdfast install crio
// does, in directories of the test's own, and returns the runc hooks the
// hooks.d file it wrote names, for each of its stages.
func installedHooks(b testing.TB, bin string, cfg hookconfig.Config) map[string][]runcHook {
	b.Helper()
	o := hooksd.Options{HooksDir: b.TempDir(), InstallDir: b.TempDir(), Binary: bin, Config: cfg}
	if _, err := hooksd.Install(o); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(o.HookFile())
	if err != nil {
		b.Fatal(err)
	}
	var f hooksd.File
	if err := json.Unmarshal(data, &f); err != nil {
		b.Fatalf("hooks.d file %s: %v", o.HookFile(), err)
	}
	h := runcHook{Path: f.Hook.Path, Args: f.Hook.Args, Env: f.Hook.Env}
	if f.Hook.Timeout != nil {
		h.Timeout = *f.Hook.Timeout
	}
	hooks := map[string][]runcHook{}
	for _, st := range f.Stages {
		hooks[st] = []runcHook{h}
	}
	return hooks
}

// BenchmarkHookRequest measures the engine's side of a hook run alone: the
// round trip of an OpHook request at createRuntime over a warm connection
// (no hook process), for a runc spec's config.json (and state) with CRI-O's
// annotations whose pod a policy with three exec deny rules (two files, a
// directory) selects, each resolved in the container's busybox root. The
// container's process is a sleeper in a cgroup of its own; each run
// registers a new id, unregistered untimed. Reported: round-trip
// p50/p90/p99 and the engine's CPU time per request (utime+stime of its
// /proc stat, read around each request).
//
//	go test -run '^$' -bench HookRequest -benchtime 2000x ./test/hook/
func BenchmarkHookRequest(b *testing.B) {
	r := newRuncEnv(b)
	policy := appPolicy("bench", "locked", `exec:
  deny: [/usr/bin/id, /bin/wget, /usr/sbin/]`)
	e := harness.StartEngine(b, harness.Options{Policies: map[string]string{"bench.yaml": policy},
		Args: []string{"--log-level", "info"}})
	cg := harness.NewCgroup(b)
	sleeper := cg.Start(b, "sleep", "1000000")
	annotations := lockedAnnotations("request")
	bundle := r.bundle(b, bundleOpts{Args: []string{"/bin/sleep", "600"}, Annotations: annotations}).Bundle
	client := e.Client()
	defer client.Close()
	ctx := context.Background()
	warm := dialWarm(b, e.Socket)
	cpu := func() time.Duration {
		d, err := harness.ProcessCPU(e.PID())
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	var rtt []time.Duration
	var engineCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("request-%d", i)
		run := api.HookRun{Stage: "createRuntime", State: json.RawMessage(harness.OCIState(id, "creating", sleeper.Process.Pid, bundle, annotations))}
		line, err := json.Marshal(api.Request{Op: api.OpHook, Hook: &run})
		if err != nil {
			b.Fatal(err)
		}
		before := cpu()
		start := time.Now()
		got, err := warm.call(append(line, '\n'))
		rtt = append(rtt, time.Since(start))
		engineCPU += cpu() - before
		if err != nil {
			b.Fatalf("hook request %s: %v", id, err)
		}
		b.StopTimer()
		if got.CgroupID != cg.ID || !slices.Equal(got.Policies, []string{"bench"}) {
			b.Fatalf("hook request %s registered %+v, want cgroup %d under policy bench", id, got, cg.ID)
		}
		if i == 0 {
			requireEnforcedByIdentity(b, client, id, 3)
		}
		if err := client.Unregister(ctx, id); err != nil {
			b.Fatalf("unregister %s: %v", id, err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	for _, p := range []int{50, 90, 99} {
		b.ReportMetric(ms(percentile(rtt, p)), fmt.Sprintf("rtt-p%d-ms", p))
	}
	b.ReportMetric(ms(engineCPU)/float64(b.N), "engine-cpu-ms")
}

// requireEnforcedByIdentity fails unless n exec rules of container id are
// resolved in its root and written to the maps by file identity.
func requireEnforcedByIdentity(b *testing.B, client *api.Client, id string, n int) {
	b.Helper()
	ex, err := client.Explain(context.Background(), id)
	if err != nil {
		b.Fatalf("explain %s: %v", id, err)
	}
	enforced := 0
	for _, r := range ex.Rules {
		if r.Enforced {
			enforced++
		}
	}
	if enforced != n {
		b.Fatalf("container %s: %d of its rules enforced by identity, want %d: %+v", id, enforced, n, ex.Rules)
	}
}

// warmConn is one connection to the engine kept open across requests, as
// a registrar that stays connected keeps it (api.Client keeps none for
// OpHook: the hook makes one connection per run).
type warmConn struct {
	conn net.Conn
	in   *bufio.Reader
}

func dialWarm(b *testing.B, socket string) *warmConn {
	b.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return &warmConn{conn: conn, in: bufio.NewReader(conn)}
}

// call sends one request line and decodes the engine's answer.
func (w *warmConn) call(line []byte) (*api.Container, error) {
	w.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.conn.Write(line); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	answer, err := w.in.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var resp api.Response
	if err := json.Unmarshal(answer, &resp); err != nil {
		return nil, fmt.Errorf("decode answer %q: %w", answer, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return resp.Container, nil
}
