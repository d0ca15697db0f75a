package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// denyIn is a policy for one namespace: binary is killed, connects to
// addr refused.
func denyIn(name, namespace, binary, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: %s}
spec:
  selector: {namespaces: [%s]}
  exec: {deny: [%s]}
  network:
    connect:
      deny: [{cidr: 127.0.0.1/32, ports: ["%s"], protocol: tcp}]
`, name, namespace, binary, port)
}

const secretsFilter = `apiVersion: holdfast.dev/v1alpha1
kind: RedactionFilter
metadata: {name: secrets}
spec:
  args: ['token=(\w+)', '--password[= ](\S+)']
  argFlags: [--password]
`

func registerIn(t *testing.T, e *harness.Engine, id string, cg harness.Cgroup, namespace, pod, container string) {
	t.Helper()
	out, err := e.CLI("containers", "add", "--id", id, "--cgroup-path", cg.Dir,
		"--namespace", namespace, "--pod", pod, "--container", container)
	if err != nil {
		t.Fatalf("containers add %s: %v\n%s", id, err, out)
	}
}

// follower is a running `holdfast events` and the lines it printed.
type follower struct {
	args  []string
	lines chan string
	cmd   *exec.Cmd
}

// follow starts `holdfast events ARGS` and waits until the engine counts
// it as a subscriber.
func follow(t *testing.T, e *harness.Engine, args ...string) *follower {
	t.Helper()
	before := status(t, e).EventSubscribers
	cmd := exec.Command(e.Bin, append([]string{"events", "--socket", e.Socket}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &follower{args: args, lines: make(chan string, 4096), cmd: cmd}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f.lines <- sc.Text()
		}
		close(f.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("holdfast events %v stderr: %s", args, stderr.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for status(t, e).EventSubscribers <= before {
		if time.Now().After(deadline) {
			t.Fatalf("holdfast events %v did not subscribe within 10s: %s", args, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

// until returns the lines read up to and including the first that done
// accepts; it fails after 10s.
func (f *follower) until(t *testing.T, done func(line string) bool) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-f.lines:
			if !ok {
				t.Fatalf("holdfast events %v exited; it printed %q", f.args, got)
			}
			got = append(got, l)
			if done(l) {
				return got
			}
		case <-timeout:
			t.Fatalf("holdfast events %v: no awaited line within 10s; got %q", f.args, got)
		}
	}
}

func decode(t testing.TB, line string) map[string]any {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("line %q is not JSON: %v", line, err)
	}
	return ev
}

func seqOf(ev map[string]any) uint64 {
	n, _ := ev["seq"].(float64)
	return uint64(n)
}

// hasSeq accepts the JSON line numbered seq.
func hasSeq(t *testing.T, seq uint64) func(string) bool {
	return func(l string) bool { return seqOf(decode(t, l)) == seq }
}

// seqsUpTo are the seqs of the JSON lines numbered at most max.
func seqsUpTo(t *testing.T, lines []string, max uint64) []uint64 {
	var out []uint64
	for _, l := range lines {
		if s := seqOf(decode(t, l)); s <= max {
			out = append(out, s)
		}
	}
	return out
}

func TestEventsFilters(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{
		"shop.yaml": denyIn("shop-lock", "shop", binary, addr),
		"bank.yaml": denyIn("bank-lock", "bank", binary, addr),
	}})
	shop, bank := harness.NewCgroup(t), harness.NewCgroup(t)
	registerIn(t, e, "shop-1", shop, "shop", "web-0", "main")
	registerIn(t, e, "bank-1", bank, "bank", "vault-0", "teller")

	followers := map[string]*follower{
		"namespace": follow(t, e, "-o", "json", "--namespace", "shop"),
		"container": follow(t, e, "-o", "json", "--container", "teller"),
		"policy":    follow(t, e, "-o", "json", "--policy", "bank-lock"),
		"type":      follow(t, e, "-o", "json", "--type", "connect-refused,bind-refused"),
		"verdict":   follow(t, e, "-o", "json", "--verdict", "deny", "--pod", "web-0"),
	}
	text := follow(t, e)

	if r := shop.Run(t, binary); !r.Killed() {
		t.Fatalf("denied binary in shop: %v", r)
	}
	if r := dial(t, shop, "tcp", addr); r.ExitCode != 3 {
		t.Fatalf("denied connect in shop: %v", r)
	}
	if r := bank.Run(t, binary); !r.Killed() {
		t.Fatalf("denied binary in bank: %v", r)
	}
	find := func(action string, cg harness.Cgroup) map[string]any {
		return e.WaitEvent(t, func(ev map[string]any) bool {
			return ev["action"] == action && ev["cgroupId"] == float64(cg.ID)
		})
	}
	shopExec, shopConnect, bankExec := seqOf(find("exec-killed", shop)), seqOf(find("connect-refused", shop)), seqOf(find("exec-killed", bank))
	last := max(shopExec, shopConnect, bankExec)

	for name, want := range map[string][]uint64{
		"namespace": {shopExec, shopConnect},
		"container": {bankExec},
		"policy":    {bankExec},
		"type":      {shopConnect},
		"verdict":   {shopExec, shopConnect},
	} {
		got := seqsUpTo(t, followers[name].until(t, hasSeq(t, want[len(want)-1])), last)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("filter %s (%v): got seqs %v, want %v", name, followers[name].args, got, want)
		}
	}
	lines := text.until(t, func(l string) bool { return strings.Contains(l, " exec-killed deny ") })
	want := regexp.MustCompile(`^\S+ #` + strconv.FormatUint(shopExec, 10) + ` exec-killed deny shop/web-0/main policy=shop-lock rule="` +
		regexp.QuoteMeta(binary) + `" binary=` + regexp.QuoteMeta(binary) + ` (\S+\(\d+\) → )*id\(\d+\) args=\["` + regexp.QuoteMeta(binary) + `"\]$`)
	if l := lines[len(lines)-1]; !want.MatchString(l) {
		t.Errorf("text line %q does not match %s", l, want)
	}
}

// A secret in the argv of a process that is refused never reaches the
// events file or the stream; a bad filter file is refused with its file
// and field and the last good filters stay, across a restart too.
func TestRedactionThroughRealDenial(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{
		"shop.yaml":    denyIn("shop-lock", "shop", binary, addr),
		"secrets.yaml": secretsFilter,
	}})
	cg := harness.NewCgroup(t)
	registerIn(t, e, "shop-1", cg, "shop", "web-0", "main")
	if st := status(t, e); strings.Join(st.RedactionFilters, ",") != "secrets" || st.RedactionError != "" {
		t.Fatalf("status: filters %v, error %q", st.RedactionFilters, st.RedactionError)
	}
	jsonLines, textLines := follow(t, e, "-o", "json"), follow(t, e)

	// sh → the dial helper: the secret is in the parent's argv (one -c
	// element) and the child's (separate elements).
	cmd := exec.Command("/bin/sh", "-c", os.Args[0]+" --password hunter2 token=abc123; true")
	cmd.Env = append(os.Environ(), envDial+"=tcp "+addr)
	if r := cg.RunCmd(t, cmd); !strings.Contains(r.Stdout, "refused:") {
		t.Fatalf("denied connect: %v", r)
	}
	ev := e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "connect-refused" })
	streamed := jsonLines.until(t, hasSeq(t, seqOf(ev)))
	text := textLines.until(t, func(l string) bool { return strings.Contains(l, "connect-refused") })
	file, err := os.ReadFile(e.EventsFile)
	if err != nil {
		t.Fatal(err)
	}
	for where, data := range map[string]string{"events file": string(file), "json stream": strings.Join(streamed, "\n"), "text stream": strings.Join(text, "\n")} {
		if strings.Contains(data, "hunter2") || strings.Contains(data, "abc123") {
			t.Errorf("secret in the %s: %s", where, data)
		}
	}
	// The argv is there, masked, for the process and its parent.
	p, _ := ev["process"].(map[string]any)
	if args := fmt.Sprint(p["args"]); !strings.Contains(args, "--password ***** token=*****") {
		t.Errorf("process args not redacted: %v (event %v)", args, ev)
	}
	ancestors, _ := ev["ancestors"].([]any)
	if len(ancestors) == 0 {
		t.Fatalf("event has no ancestors: %v", ev)
	}
	parent, _ := ancestors[0].(map[string]any)
	if args := fmt.Sprint(parent["args"]); parent["binary"] != "/bin/sh" || !strings.Contains(args, "--password ***** token=*****; true") {
		t.Errorf("parent sh: binary %v, args %v; want its -c string redacted", parent["binary"], args)
	}
	if fmt.Sprint(ev["redactedBy"]) != "[secrets]" {
		t.Errorf("redactedBy = %v, want [secrets]", ev["redactedBy"])
	}
	if l := text[len(text)-1]; !strings.Contains(l, "sh(") || !strings.Contains(l, " → ") || !strings.Contains(l, "redactedBy=secrets") {
		t.Errorf("text line lacks the chain or redactedBy: %s", l)
	}

	// A bad filter file is refused, naming file and field; the filters in
	// force stay.
	e.WritePolicy(t, "secrets.yaml", strings.Replace(secretsFilter, `token=(\w+)`, `token=(\w+`, 1))
	out, err := e.CLI("policy", "reload")
	if err == nil || !strings.Contains(out, "secrets.yaml") || !strings.Contains(out, "spec.args[0]") {
		t.Errorf("bad filter reload: want an error naming secrets.yaml and spec.args[0], got %v: %s", err, out)
	}
	check := func(when string) {
		st := status(t, e)
		if strings.Join(st.RedactionFilters, ",") != "secrets" || !strings.Contains(st.RedactionError, "spec.args[0]") {
			t.Errorf("%s: status filters %v, error %q; want the last good set and the error", when, st.RedactionFilters, st.RedactionError)
		}
	}
	check("after a bad reload")
	e.Restart(t)
	check("after a restart with the bad file")

	// The engine watches the policy dir: a fixed file goes in without a
	// reload.
	e.WritePolicy(t, "secrets.yaml", strings.Replace(secretsFilter, "name: secrets", "name: secrets-v2", 1))
	deadline := time.Now().Add(10 * time.Second)
	for st := status(t, e); strings.Join(st.RedactionFilters, ",") != "secrets-v2" || st.RedactionError != ""; st = status(t, e) {
		if time.Now().After(deadline) {
			t.Fatalf("fixed filter file not applied within 10s: filters %v, error %q", st.RedactionFilters, st.RedactionError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --since replays the matching lines of the events file, then follows
// live ones without repeating any.
func TestEventsSinceReplay(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{
			"shop.yaml": denyIn("shop-lock", "shop", binary, addr),
			"bank.yaml": denyIn("bank-lock", "bank", binary, addr),
		},
		// Small files: the replay must read the rotated backups too.
		Args: []string{"--events-max-bytes", "1500", "--events-max-backups", "20"},
	})
	shop, bank := harness.NewCgroup(t), harness.NewCgroup(t)
	registerIn(t, e, "shop-1", shop, "shop", "web-0", "main")
	registerIn(t, e, "bank-1", bank, "bank", "vault-0", "teller")
	for range 3 {
		shop.Run(t, binary)
		bank.Run(t, binary)
	}
	var past []uint64
	for _, ev := range waitEvents(t, e, 3, func(ev map[string]any) bool {
		return ev["action"] == "exec-killed" && ev["cgroupId"] == float64(shop.ID)
	}) {
		past = append(past, seqOf(ev))
	}
	if _, err := os.Stat(e.EventsFile + ".1"); err != nil {
		t.Fatalf("the events file was not rotated: %v", err)
	}

	f := follow(t, e, "-o", "json", "--since", "1h", "--namespace", "shop", "--type", "exec-killed")
	replayed := f.until(t, hasSeq(t, past[2]))
	if got := seqsUpTo(t, replayed, past[2]); fmt.Sprint(got) != fmt.Sprint(past) {
		t.Errorf("replayed seqs %v, want %v", got, past)
	}
	shop.Run(t, binary)
	bank.Run(t, binary)
	live := e.WaitEvent(t, func(ev map[string]any) bool {
		return ev["action"] == "exec-killed" && ev["cgroupId"] == float64(shop.ID) && seqOf(ev) > past[2]
	})
	next := f.until(t, hasSeq(t, seqOf(live)))
	if len(next) != 1 {
		t.Errorf("after the replay want only the live shop event %d, got %q", seqOf(live), next)
	}

	if out, err := exec.Command(e.Bin, "events", "--socket", e.Socket, "--since", "yesterday").CombinedOutput(); err == nil || !strings.Contains(string(out), "--since") {
		t.Errorf("bad --since: want a usage error naming it, got %v: %s", err, out)
	}
}

func bootID(t *testing.T) string {
	data, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// Every line has a seq, larger than any before, also across kill -9.
func TestEventSeqSurvivesRestart(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"shop.yaml": denyIn("shop-lock", "shop", binary, addr)},
		Args:     []string{"--event-summary-interval", "200ms"},
	})
	cg := harness.NewCgroup(t)
	registerIn(t, e, "shop-1", cg, "shop", "web-0", "main")
	f := follow(t, e, "-o", "json", "--type", "exec-killed")
	cg.Run(t, binary)
	e.WaitEvent(t, func(ev map[string]any) bool { return ev["summary"] == "exec-killed" })
	e.Restart(t)
	cg.Run(t, binary)
	kills := waitEvents(t, e, 2, func(ev map[string]any) bool { return ev["action"] == "exec-killed" })
	// `holdfast events` outlives the engine: it resubscribes and prints
	// both kills, once each.
	var printed []uint64
	for _, l := range f.until(t, hasSeq(t, seqOf(kills[1]))) {
		if ev := decode(t, l); ev["action"] == "exec-killed" { // not the summaries, whose type is the same
			printed = append(printed, seqOf(ev))
		}
	}
	if fmt.Sprint(printed) != fmt.Sprint([]uint64{seqOf(kills[0]), seqOf(kills[1])}) {
		t.Errorf("holdfast events across a restart printed seqs %v, want %d and %d", printed, seqOf(kills[0]), seqOf(kills[1]))
	}
	var prev uint64
	boot := bootID(t)
	events := e.Events(t)
	for _, ev := range events {
		if s := seqOf(ev); s <= prev {
			t.Errorf("seq %d after %d: %v", s, prev, ev)
		} else {
			prev = s
		}
		if ev["bootId"] != boot || ev["schema"] != float64(api.EventSchema) {
			t.Errorf("line without boot id %s or schema %d: %v", boot, api.EventSchema, ev)
		}
	}
	if n := countAction(events, "exec-killed"); n != 2 {
		t.Errorf("want one exec-killed event before and one after the restart, got %d in %v", n, events)
	}
}

func countAction(events []map[string]any, action string) int {
	n := 0
	for _, ev := range events {
		if ev["action"] == action {
			n++
		}
	}
	return n
}

// waitEvents waits up to 10s for n events that match accepts.
func waitEvents(t *testing.T, e *harness.Engine, n int, match func(map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []map[string]any
		for _, ev := range e.Events(t) {
			if match(ev) {
				got = append(got, ev)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d matching events within 10s; events: %v", len(got), n, e.Events(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A subscriber that reads nothing while a thousand lines are published
// holds up neither the events file nor registrations; when it reads again
// it is told exactly how many lines it lost.
func TestSlowSubscriberDoesNotBlockRegistrations(t *testing.T) {
	const ports, perPort, firstPort = 200, 5, 40000
	// One rule per port: the kernel lets perPort events through per rule.
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{"flood.yaml": floodPolicy(firstPort, ports)},
		Args:     []string{"--event-subscriber-buffer", "16", "--event-summary-interval", "1h"},
	})
	cg := harness.NewCgroup(t)
	registerIn(t, e, "flooder", cg, "shop", "web-0", "main")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled, err := e.Client().SubscribeEvents(ctx, api.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()

	done := make(chan error, 1)
	go func() {
		for p := firstPort; p < firstPort+ports; p++ {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d 127.0.0.1:%d", envFlood, perPort, p))
			if r := cg.RunCmd(t, cmd); strings.TrimSpace(r.Stdout) != strconv.Itoa(perPort) {
				done <- fmt.Errorf("flood port %d: %v", p, r)
				return
			}
		}
		done <- nil
	}()
	registered := 0
	for flooding := true; flooding; {
		registerIn(t, e, fmt.Sprintf("during-%d", registered), harness.NewCgroup(t), "bank", "vault-0", "teller")
		registered++
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			flooding = false
		default:
		}
	}
	t.Logf("%d registrations succeeded while a subscriber read nothing", registered)
	events := waitEvents(t, e, ports*perPort, func(ev map[string]any) bool {
		return ev["action"] == "connect-refused" && ev["cgroupId"] == float64(cg.ID)
	})
	target := seqOf(events[len(events)-1])

	// Lines dropped for it are the latest ones, so the accounting, not a
	// line, tells when it has heard of everything up to target.
	var first, delivered, lost uint64
	for first == 0 || first+delivered+lost-1 < target {
		raw, err := stalled.Next()
		if err != nil {
			t.Fatalf("stream after %d lines and %d lost: %v", delivered, lost, err)
		}
		var l struct {
			Seq       uint64 `json:"seq"`
			LinesLost uint64 `json:"linesLost"`
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatalf("bad line %q", raw)
		}
		if l.LinesLost > 0 {
			lost += l.LinesLost
			continue
		}
		if first == 0 {
			first = l.Seq
		}
		delivered++
	}
	if lost == 0 {
		t.Errorf("a subscriber that read nothing during %d lines lost none", ports*perPort)
	}
	if delivered+lost != target-first+1 {
		t.Errorf("seqs %d..%d: %d delivered + %d reported lost, want %d", first, target, delivered, lost, target-first+1)
	}
}

var metricsLog = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

// scrape reads the engine's /metrics.
func scrape(t *testing.T, addr string) map[string][]model.Sample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %s\n%s", resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string][]model.Sample{}
	for name, mf := range families {
		vec, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: model.Now()}, mf)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range vec {
			out[name] = append(out[name], *s)
		}
	}
	return out
}

// value is the sample of name whose labels include labels, or -1.
func value(samples map[string][]model.Sample, name string, labels map[string]string) float64 {
	for _, s := range samples[name] {
		ok := true
		for k, v := range labels {
			if string(s.Metric[model.LabelName(k)]) != v {
				ok = false
			}
		}
		if ok {
			return float64(s.Value)
		}
	}
	return -1
}

func TestMetricsEndpoint(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	audited := deniedBinary(t)
	e := harness.StartEngine(t, harness.Options{
		Policies: map[string]string{
			"shop.yaml": denyIn("shop-lock", "shop", binary, addr),
			"lab.yaml":  strings.Replace(denyIn("lab-try", "lab", audited, addr), "spec:\n", "spec:\n  mode: audit\n", 1),
		},
		Args: []string{"--metrics-addr", "127.0.0.1:0"},
	})
	log, _ := os.ReadFile(e.LogFile)
	m := metricsLog.FindSubmatch(log)
	if m == nil {
		t.Fatalf("engine log names no metrics address:\n%s", log)
	}
	metricsAddr := string(m[1])
	cg := harness.NewCgroup(t)
	registerIn(t, e, "shop-1", cg, "shop", "web-0", "main")
	if out, err := e.CLI("containers", "add", "--id", "ghost", "--cgroup-path", "/sys/fs/cgroup/no-such-cgroup"); err == nil {
		t.Fatalf("registering a missing cgroup succeeded: %s", out)
	}
	for range 2 {
		if r := cg.Run(t, binary); !r.Killed() {
			t.Fatalf("denied binary: %v", r)
		}
	}
	if r := dial(t, cg, "tcp", addr); r.ExitCode != 3 {
		t.Fatalf("denied connect: %v", r)
	}
	lab := harness.NewCgroup(t)
	registerIn(t, e, "lab-1", lab, "lab", "try-0", "main")
	if r := lab.Run(t, audited); r.ExitCode != 0 {
		t.Fatalf("audited binary: want it to run, got %v", r)
	}

	decision := func(s map[string][]model.Sample, hook, verdict, policy, mode string) float64 {
		return value(s, "holdfast_decisions_total", map[string]string{"hook": hook, "verdict": verdict, "policy": policy, "mode": mode})
	}
	var s map[string][]model.Sample
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s = scrape(t, metricsAddr)
		exec, connect := decision(s, "exec", "deny", "shop-lock", "enforce"), decision(s, "connect", "deny", "shop-lock", "enforce")
		audit := decision(s, "exec", "wouldDeny", "lab-try", "audit")
		if exec == 2 && connect == 1 && audit == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("decisions: exec %v connect %v audited exec %v, want 2, 1 and 1; %v", exec, connect, audit, s["holdfast_decisions_total"])
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"holdfast_registrations_total", map[string]string{"source": "cli", "result": "registered"}, 2},
		{"holdfast_registrations_total", map[string]string{"source": "cli", "result": "failed"}, 1},
		{"holdfast_registered_containers", nil, 2},
		{"holdfast_map_entries", map[string]string{"map": "cgroup_rules"}, 2},
		{"holdfast_map_capacity", map[string]string{"map": "cgroup_rules"}, 65536},
		{"holdfast_policy_load_ok", nil, 1},
		{"holdfast_policy_generation", nil, 0},
		{"holdfast_policies", nil, 2},
		{"holdfast_ringbuffer_lost_events_total", nil, 0},
	} {
		if got := value(s, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if allowed := value(s, "holdfast_decisions_total", map[string]string{"hook": "exec", "verdict": "allow"}); allowed < 1 {
		t.Errorf("allowed exec decisions = %v; the dial helper's exec was allowed", allowed)
	}
	for _, ss := range s["holdfast_decisions_total"] {
		for _, l := range []model.LabelName{"pod", "binary", "container"} {
			if _, ok := ss.Metric[l]; ok {
				t.Errorf("unbounded label %s on %v", l, ss.Metric)
			}
		}
	}

	// A bad policy shows as not loaded; a good reload counts a generation.
	e.WritePolicy(t, "bad.yaml", "kind: WorkloadPolicy\n")
	e.CLI("policy", "reload")
	if got := value(scrape(t, metricsAddr), "holdfast_policy_load_ok", nil); got != 0 {
		t.Errorf("after a refused reload holdfast_policy_load_ok = %v, want 0", got)
	}
	os.Remove(e.PolicyDir + "/bad.yaml")
	if out, err := e.CLI("policy", "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	s = scrape(t, metricsAddr)
	if ok, gen := value(s, "holdfast_policy_load_ok", nil), value(s, "holdfast_policy_generation", nil); ok != 1 || gen != 1 {
		t.Errorf("after a good reload: load_ok %v generation %v, want 1 and 1", ok, gen)
	}

	resp, err := http.Get("http://" + metricsAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("/healthz: %s %q", resp.Status, body)
	}
}
