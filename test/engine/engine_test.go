// End-to-end tests of the engine binary: real BPF programs in this kernel,
// real processes in real cgroups, the engine killed and restarted.
package engine_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// The test binary doubles as a network client run inside test cgroups.
const envDial = "HOLDFAST_E2E_DIAL"

func TestMain(m *testing.M) {
	if target := os.Getenv(envFlood); target != "" {
		os.Exit(harness.Flood(strings.Fields(target)))
	}
	if target := os.Getenv(envDial); target != "" {
		network, addr, _ := strings.Cut(target, " ")
		conn, err := net.DialTimeout(network, addr, 5*time.Second)
		if err == nil && network == "udp" {
			_, err = conn.Write([]byte("x"))
		}
		if err != nil {
			fmt.Println("refused:", err)
			os.Exit(3)
		}
		conn.Close()
		fmt.Println("connected")
		os.Exit(0)
	}
	os.Exit(harness.Main(m))
}

// dial runs the test binary inside cg to connect to addr.
func dial(t *testing.T, cg harness.Cgroup, network, addr string) harness.Result {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envDial+"="+network+" "+addr)
	return cg.RunCmd(t, cmd)
}

// deniedBinary copies /usr/bin/id to a path only this test uses, so the
// rule cannot kill anything else on the machine.
func deniedBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "holdfast-e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func lockdown(name, binary, addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(`apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: %s}
spec:
  selector:
    namespaces: [shop]
    podLabels: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [front]}]}
  exec:
    deny: [%s]
  network:
    connect:
      deny:
        - {cidr: 127.0.0.1/32, ports: ["%s"], protocol: tcp}
`, name, binary, port)
}

func register(t *testing.T, e *harness.Engine, id string, cg harness.Cgroup) {
	t.Helper()
	out, err := e.CLI("containers", "add", "--id", id, "--cgroup-path", cg.Dir,
		"--namespace", "shop", "--pod", "web-0", "--pod-uid", "uid-1", "--label", "app=web", "--label", "tier=front",
		"--container", "main", "--image", "busybox:latest")
	if err != nil {
		t.Fatalf("containers add: %v\n%s", err, out)
	}
	if !strings.Contains(out, "lockdown") {
		t.Fatalf("registration did not select the lockdown policy: %s", out)
	}
}

func expectEnforced(t *testing.T, cg harness.Cgroup, binary, addr string) {
	t.Helper()
	if r := cg.Run(t, binary); !r.Killed() || r.Stdout != "" {
		t.Errorf("denied %s in a registered cgroup: want SIGKILL with no output, got %v", binary, r)
	}
	if r := dial(t, cg, "tcp", addr); r.ExitCode != 3 || !strings.Contains(r.Stdout, "operation not permitted") {
		t.Errorf("connect to denied %s: want EPERM, got %v", addr, r)
	}
}

func expectFree(t *testing.T, cg harness.Cgroup, binary, addr string) {
	t.Helper()
	if r := cg.Run(t, binary); r.ExitCode != 0 || !strings.Contains(r.Stdout, "uid=") {
		t.Errorf("%s in cgroup: want it to run, got %v", binary, r)
	}
	if r := dial(t, cg, "tcp", addr); r.ExitCode != 0 {
		t.Errorf("connect to %s: want it allowed, got %v", addr, r)
	}
}

func TestEnforceRegisteredContainer(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	cg, other := harness.NewCgroup(t), harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)

	expectEnforced(t, cg, binary, addr)
	expectFree(t, other, binary, addr) // unregistered cgroup
	if r := harness.RunOutside(binary); r.ExitCode != 0 {
		t.Errorf("%s outside any registered cgroup: %v", binary, r)
	}

	kill := e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "exec-killed" })
	ctr, _ := kill["container"].(map[string]any)
	if kill["binary"] != binary || kill["policy"] != "lockdown" || ctr["id"] != "ctr-1" || ctr["namespace"] != "shop" ||
		ctr["pod"] != "web-0" || kill["cgroupId"] != float64(cg.ID) || kill["pid"] == float64(0) || kill["time"] == nil {
		t.Errorf("exec event lacks identity or policy: %v", kill)
	}
	refusal := e.WaitEvent(t, func(ev map[string]any) bool { return ev["action"] == "connect-refused" })
	if refusal["destination"] != addr || refusal["protocol"] != "tcp" || refusal["policy"] != "lockdown" {
		t.Errorf("connect event: %v", refusal)
	}
	st, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Counters; n.ExecDenied < 1 || n.ConnectRefused < 1 || n.ExecChecked < n.ExecDenied {
		t.Errorf("status counters do not show the decisions: %+v", n)
	}
	if out, err := e.CLI("status"); err != nil || !strings.Contains(out, "control exec:") || !strings.Contains(out, "kill") {
		t.Errorf("holdfast status does not report the exec mode: %v\n%s", err, out)
	}

	// Unregistering lifts enforcement and forgets the container.
	if out, err := e.CLI("containers", "remove", "--id", "ctr-1"); err != nil {
		t.Fatalf("containers remove: %v\n%s", err, out)
	}
	expectFree(t, cg, binary, addr)
	if list, _ := e.Client().List(context.Background()); len(list) != 0 {
		t.Errorf("engine still lists %v", list)
	}
	if out, err := e.CLI("containers", "remove", "--id", "ctr-1"); err == nil || !strings.Contains(out, "not registered") {
		t.Errorf("removing an unknown container: want a not-registered error, got %v: %s", err, out)
	}
}

func TestUnionOfPolicies(t *testing.T) {
	first, second, addr := deniedBinary(t), deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{
		"lockdown.yaml": lockdown("lockdown", first, addr),
		"extra.yaml":    harness.Policy("extra", "containers: [main]", "exec: {deny: ["+filepath.Dir(second)+"/]}"),
	}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	got, _ := e.Client().List(context.Background())
	if len(got) != 1 || strings.Join(got[0].Policies, ",") != "extra,lockdown" {
		t.Fatalf("want both policies selected, got %+v", got)
	}
	for _, b := range []string{first, second} {
		if r := cg.Run(t, b); !r.Killed() {
			t.Errorf("%s: want killed by the union of policies, got %v", b, r)
		}
	}
}

func linkIDs(t *testing.T, e *harness.Engine) map[string]uint32 {
	t.Helper()
	st, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, p := range st.Pinned {
		if p.Kind == "link" {
			ids[p.Path] = p.ID
		}
	}
	if len(ids) == 0 {
		t.Fatalf("status reports no pinned links: %+v", st)
	}
	return ids
}

func TestSurvivesKillAndRestart(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	before := linkIDs(t, e)
	st, _ := e.Client().Status(context.Background())
	if st.Adopted {
		t.Fatal("a fresh engine claims to have adopted pins")
	}

	e.Kill9(t)
	expectEnforced(t, cg, binary, addr) // no engine process at all

	startAdopting(t, e)
	after := linkIDs(t, e)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("link IDs changed across restart (re-attached?):\nbefore %v\nafter  %v", before, after)
	}
	list, _ := e.Client().List(context.Background())
	if len(list) != 1 || list[0].ID != "ctr-1" || list[0].CgroupID != cg.ID {
		t.Errorf("registration lost across restart: %+v", list)
	}
	expectEnforced(t, cg, binary, addr)

	// The restarted engine accepts new registrations.
	cg2 := harness.NewCgroup(t)
	register(t, e, "ctr-2", cg2)
	expectEnforced(t, cg2, binary, addr)

	// SIGTERM is no different: pins stay.
	e.Terminate(t)
	expectEnforced(t, cg2, binary, addr)
}

func TestUninstallRemovesEnforcement(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	expectEnforced(t, cg, binary, addr)

	out, err := e.CLI("uninstall", "--bpf-dir", e.BPFDir, "--state-dir", e.StateDir, "--socket", e.Socket)
	if err == nil || !strings.Contains(out, "engine is running") {
		t.Fatalf("uninstall under a running engine: want refusal, got %v: %s", err, out)
	}
	e.Terminate(t)
	out, err = e.CLI("uninstall", "--bpf-dir", e.BPFDir, "--state-dir", e.StateDir, "--socket", e.Socket)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	expectFree(t, cg, binary, addr)
	var left []string
	// Only our own dir: a fresh bpffs instance has the kernel's own files.
	filepath.Walk(e.BPFDir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("pins left after uninstall: %v", left)
	}
}

func TestBadPolicyKeepsEnforcement(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)

	bad := strings.Replace(lockdown("lockdown", binary, addr), "127.0.0.1/32", "127.0.0.300/32", 1)
	e.WritePolicy(t, "lockdown.yaml", bad)
	out, err := e.CLI("policy", "reload")
	if err == nil || !strings.Contains(out, "lockdown.yaml") || !strings.Contains(out, "cidr") {
		t.Fatalf("reload of a bad policy: want an error naming file and field, got %v: %s", err, out)
	}
	expectEnforced(t, cg, binary, addr)
	st, _ := e.Client().Status(context.Background())
	if !strings.Contains(st.PolicyError, "lockdown.yaml") {
		t.Errorf("status does not show the refused policy: %q", st.PolicyError)
	}

	// A restart with the bad file still in place keeps the last good policies.
	e.Restart(t)
	expectEnforced(t, cg, binary, addr)

	// validate needs no engine and names the problem.
	out, err = e.CLI("policy", "validate", filepath.Join(e.PolicyDir, "lockdown.yaml"))
	if err == nil || !strings.Contains(out, "cidr") {
		t.Errorf("policy validate: want an error naming the cidr field, got %v: %s", err, out)
	}
}

func TestUnknownCgroupRefused(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	for _, path := range []string{t.TempDir(), "/no/such/cgroup"} {
		out, err := e.CLI("containers", "add", "--id", "ghost", "--cgroup-path", path)
		if err == nil || !strings.Contains(out, "unknown cgroup") {
			t.Errorf("registering %s: want an unknown-cgroup error, got %v: %s", path, err, out)
		}
	}
	expectEnforced(t, cg, binary, addr)
}

// A registrar that maps a stale pid or a wrong cgroupsPath can name the
// cgroup the engine runs in, or one above it. Rules there would hold the
// engine and everything beside it; the engine refuses them.
func TestEngineCgroupRefused(t *testing.T) {
	binary, addr := deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", binary, addr)}})
	m := harness.CgroupMount(t)
	own, err := m.DirOfPID(e.PID())
	if err != nil {
		t.Fatal(err)
	}
	// The root is refused as no container's cgroup whoever asks, also by its
	// path relative to the v2 root.
	cases := map[string]string{m.Root: "root cgroup is not a container's", "/": "root cgroup is not a container's"}
	if own != m.Root {
		cases[own] = "holds the engine itself"
	}
	for dir, want := range cases {
		out, err := e.CLI("containers", "add", "--id", "self", "--cgroup-path", dir, "--namespace", "shop",
			"--label", "app=web", "--label", "tier=front")
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("registering the engine's cgroup or its ancestor %s: want it refused with %q, got %v: %s", dir, want, err, out)
		}
	}
	if r := harness.RunOutside(binary); r.ExitCode != 0 {
		t.Errorf("%s beside the engine after the refused registrations: %v", binary, r)
	}
}

func TestNonRootPeerRefused(t *testing.T) {
	e := harness.StartEngine(t, harness.Options{})
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	os.Chmod(filepath.Dir(e.Bin), 0o755)
	os.Chmod(filepath.Dir(e.Socket), 0o755)

	run := func() string {
		cmd := exec.Command(e.Bin, "status", "--socket", e.Socket)
		cmd.SysProcAttr = nobody
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("uid 65534 got a status answer: %s", out)
		}
		return string(out)
	}
	// The socket file itself is root-only...
	if out := run(); !strings.Contains(out, "permission denied") {
		t.Errorf("non-root connect to a 0600 socket: %s", out)
	}
	// ...and even through a world-writable socket the engine checks the peer.
	if err := os.Chmod(e.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := run(); !strings.Contains(out, "peer uid 65534") {
		t.Errorf("engine did not refuse the non-root peer by its credentials: %s", out)
	}
	if _, err := e.Client().Status(context.Background()); err != nil {
		t.Errorf("root peer refused: %v", err)
	}
}

func TestReloadAppliesChangedPolicy(t *testing.T) {
	first, second, addr := deniedBinary(t), deniedBinary(t), harness.ListenTCP(t, "127.0.0.1:0").String()
	e := harness.StartEngine(t, harness.Options{Policies: map[string]string{"lockdown.yaml": lockdown("lockdown", first, addr)}})
	cg := harness.NewCgroup(t)
	register(t, e, "ctr-1", cg)
	if r := cg.Run(t, first); !r.Killed() {
		t.Fatalf("%s before reload: want killed, got %v", first, r)
	}

	// A policy that sorts first shifts every rule ID; events must still
	// name the right policy and rule.
	e.WritePolicy(t, "lockdown.yaml", lockdown("lockdown", second, addr))
	e.WritePolicy(t, "aaa.yaml", harness.Policy("aaa", "namespaces: [elsewhere]", "exec: {deny: [/usr/bin/true, /usr/bin/false]}"))
	if out, err := e.CLI("policy", "reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if r := cg.Run(t, first); r.ExitCode != 0 {
		t.Errorf("%s after its rule was removed: want it to run, got %v", first, r)
	}
	if r := cg.Run(t, second); !r.Killed() {
		t.Errorf("%s after reload: want killed, got %v", second, r)
	}
	ev := e.WaitEvent(t, func(ev map[string]any) bool { return ev["binary"] == second })
	if ev["policy"] != "lockdown" || ev["rule"] != second {
		t.Errorf("event after reload names the wrong rule: %v", ev)
	}
	st, _ := e.Client().Status(context.Background())
	if st.Rulesets != 1 {
		t.Errorf("want the old ruleset collected, status says %d rulesets", st.Rulesets)
	}
}
