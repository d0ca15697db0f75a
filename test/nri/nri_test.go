// End-to-end tests of holdfast-nri: a real containerd v2.4 with NRI, Debian's
// runc, pods driven through the CRI API, the real engine with its BPF
// programs. Build containerd first with test/scripts/build-containerd.sh
// (the tests run it themselves when the cache is empty).
package nri_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/cri"
	"github.com/holdfast-dev/holdfast/nri-plugin/install"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// killedExit is how CRI reports a process ended by SIGKILL.
const killedExit = 128 + 9

// shopExecPolicy selects pods labelled app=web in namespace shop: /bin/id
// may not run.
const shopExecPolicy = `apiVersion: holdfast.dev/v1alpha1
kind: WorkloadPolicy
metadata: {name: shop-web}
spec:
  selector:
    namespaces: [shop]
    podLabels: {matchLabels: {app: web}}
  exec:
    deny: [/bin/id]
`

// shopPolicy is shopExecPolicy, and nothing may connect to 127.0.0.1:port.
func shopPolicy(port int) map[string]string {
	return map[string]string{"shop-web.yaml": shopExecPolicy + fmt.Sprintf(`  network:
    connect:
      deny:
        - {cidr: 127.0.0.1/32, ports: ["%d"], protocol: tcp}
`, port)}
}

// listener accepts TCP connections on 127.0.0.1 and records what each sent.
type listener struct {
	port int
	mu   sync.Mutex
	got  []string
}

func listen(t *testing.T) *listener {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ln := &listener{port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				ln.mu.Lock()
				ln.got = append(ln.got, strings.TrimSpace(line))
				ln.mu.Unlock()
			}()
		}
	}()
	return ln
}

func (l *listener) received() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// startShop starts an engine with shopPolicy for a new listener and the
// plugin in the shared containerd.
func startShop(t *testing.T) (*containerd, *listener, *harness.Engine) {
	t.Helper()
	c := sharedContainerd(t)
	ln := listen(t)
	e := harness.StartEngine(t, harness.Options{Policies: shopPolicy(ln.port)})
	startPlugin(t, c, e.Socket)
	return c, ln, e
}

// connectCmd connects to the listener and reports the outcome.
func connectCmd(port int, msg string) []string {
	return []string{"/bin/sh", "-c", fmt.Sprintf("echo %s | nc 127.0.0.1 %d; echo rc=$?", msg, port)}
}

func TestDeniedBinaryKilledAtFirstInstruction(t *testing.T) {
	c, ln, e := startShop(t)

	web := c.runPod(t, "shop", "web-0", map[string]string{"app": "web"})
	free := c.runPod(t, "default", "web-0", map[string]string{"app": "web"})

	// The container's own command is the denied binary.
	webID := web.run(t, "main", "/bin/id")
	st := web.wait(t, webID)
	if st.GetExitCode() != killedExit {
		t.Errorf("selected pod: /bin/id exited %d (%s), want killed (%d)", st.GetExitCode(), st.GetReason(), killedExit)
	}
	if out := web.output(t, "main"); out != "" {
		t.Errorf("selected pod: /bin/id wrote %q, want nothing: it must die before its first instruction", out)
	}

	// A running container of each pod: registered, selected or not, and the
	// engine's event names the container NRI described.
	webApp := web.run(t, "app", "/bin/sleep", "999")
	freeApp := free.run(t, "app", "/bin/sleep", "999")
	regs := registrations(t, e.Socket)
	if r := regs[webApp]; !slices.Equal(r.Policies, []string{"shop-web"}) {
		t.Errorf("selected container registered as %+v, want policy shop-web", r)
	}
	if r, ok := regs[freeApp]; !ok || len(r.Policies) != 0 {
		t.Errorf("unselected container registered as %+v (found %v), want no policies", r, ok)
	}
	if code, out := web.exec(t, webApp, "/bin/id"); code != killedExit || out != "" {
		t.Errorf("selected pod: exec /bin/id exited %d with %q, want killed silently", code, out)
	}
	e.WaitEvent(t, func(ev map[string]any) bool {
		ctr, _ := ev["container"].(map[string]any)
		return ev["binary"] == "/bin/id" && ev["policy"] == "shop-web" && ctr != nil &&
			ctr["id"] == webApp && ctr["namespace"] == "shop" && ctr["pod"] == "web-0" && ctr["name"] == "app"
	})
	if code, out := free.exec(t, freeApp, "/bin/id"); code != 0 || !strings.Contains(out, "uid=0(root)") {
		t.Errorf("unselected pod: exec /bin/id exited %d with %q, want it to run", code, out)
	}

	web.wait(t, web.run(t, "client", connectCmd(ln.port, "from-web")...))
	if out := web.output(t, "client"); !strings.Contains(out, "rc=1") || !strings.Contains(out, "not permitted") {
		t.Errorf("selected pod: connect output %q, want it refused (EPERM)", out)
	}

	freeID := free.run(t, "main", "/bin/id")
	st = free.wait(t, freeID)
	if st.GetExitCode() != 0 || !strings.Contains(free.output(t, "main"), "uid=0(root)") {
		t.Errorf("unselected pod: /bin/id exited %d with %q, want it to run", st.GetExitCode(), free.output(t, "main"))
	}
	free.wait(t, free.run(t, "client", connectCmd(ln.port, "from-free")...))
	if out := free.output(t, "client"); !strings.Contains(out, "rc=0") {
		t.Errorf("unselected pod: connect output %q, want success", out)
	}
	waitFor(t, "the unselected pod's message", func() bool { return slices.Contains(ln.received(), "from-free") })
	if got := ln.received(); slices.Contains(got, "from-web") {
		t.Errorf("listener got %q: the selected pod's connect went through", got)
	}
}

func TestRemovalUnregisters(t *testing.T) {
	c := sharedContainerd(t)
	e := harness.StartEngine(t, harness.Options{})
	startPlugin(t, c, e.Socket)
	mount := harness.CgroupMount(t)

	p := c.runPod(t, "shop", "cart-0", map[string]string{"app": "cart"})
	first := p.run(t, "main", "/bin/sleep", "999")
	second := p.run(t, "sidecar", "/bin/sleep", "999")

	regs := registrations(t, e.Socket)
	r, ok := regs[first]
	if !ok {
		t.Fatalf("running container %s not registered; have %v", first, regs)
	}
	wantID, err := cgroup.ID(mount.Dir(c.cgroupParent + "/" + first))
	if err != nil {
		t.Fatal(err)
	}
	if r.CgroupID != wantID || r.Namespace != "shop" || r.Pod != "cart-0" || r.PodUID != p.config.Metadata.Uid ||
		r.Labels["app"] != "cart" || r.Name != "main" || r.Image != testImage || r.Source != "nri" {
		t.Errorf("registration %+v does not describe container main of shop/cart-0 in cgroup %d", r, wantID)
	}

	p.removeContainer(t, first)
	regs = registrations(t, e.Socket)
	if _, ok := regs[first]; ok {
		t.Errorf("removed container %s is still registered", first)
	}
	if _, ok := regs[second]; !ok {
		t.Errorf("removing one container unregistered its sibling %s", second)
	}

	p.remove(t)
	for id, r := range registrations(t, e.Socket) {
		if r.PodUID == p.config.Metadata.Uid {
			t.Errorf("pod removed but container %s (%s) still registered", id, r.Name)
		}
	}
}

func TestContainerdRestartResynchronizes(t *testing.T) {
	c := sharedContainerd(t)
	e := harness.StartEngine(t, harness.Options{})
	plug := startPlugin(t, c, e.Socket)
	p := c.runPod(t, "shop", "web-1", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	before := registrations(t, e.Socket)[id]
	if before.ID == "" {
		t.Fatalf("container %s not registered", id)
	}

	c.stop()
	plug.waitLog(t, "connection to runtime lost", 1)
	// Drop the registration while containerd is away: only the plugin's
	// Synchronize on reconnection can bring it back.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Client().Unregister(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	plug.waitLog(t, "registered with runtime", 2)

	regs := waitRegistrations(t, e.Socket, "container re-registered by synchronize", func(r map[string]api.Container) bool {
		_, ok := r[id]
		return ok
	})
	if got := regs[id]; got.CgroupID != before.CgroupID || got.Source != "nri" {
		t.Errorf("after resync: %+v, want the same cgroup %d from nri", got, before.CgroupID)
	}
	byCgroup := map[uint64][]string{}
	for cid, r := range regs {
		byCgroup[r.CgroupID] = append(byCgroup[r.CgroupID], cid)
	}
	for cg, ids := range byCgroup {
		if len(ids) > 1 {
			t.Errorf("cgroup %d registered %d times: %v", cg, len(ids), ids)
		}
	}

	// The plugin handles events again.
	next := p.run(t, "after-restart", "/bin/sleep", "999")
	if _, ok := registrations(t, e.Socket)[next]; !ok {
		t.Errorf("container started after the restart (%s) not registered", next)
	}
}

func TestEngineKilledEnforcementHolds(t *testing.T) {
	c, ln, e := startShop(t)
	p := c.runPod(t, "shop", "web-2", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
		t.Fatalf("before the kill: /bin/id exited %d (%q), want killed", code, out)
	}
	before := registrations(t, e.Socket)

	e.Kill9(t)
	if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
		t.Errorf("engine dead: /bin/id exited %d (%q), want still killed", code, out)
	}
	if _, out := p.exec(t, id, connectCmd(ln.port, "engine-dead")...); !strings.Contains(out, "rc=1") || !strings.Contains(out, "not permitted") {
		t.Errorf("engine dead: connect output %q, want still refused", out)
	}
	// Fail-open: a container starts while the engine is down...
	late := p.run(t, "late", "/bin/sleep", "999")

	e.Start(t)
	after := registrations(t, e.Socket)
	for cid, r := range before {
		if got, ok := after[cid]; !ok || got.CgroupID != r.CgroupID {
			t.Errorf("restarted engine lost %s: had %+v, has %+v", cid, r, got)
		}
	}
	// ...and the plugin registers it once the engine is back.
	waitRegistrations(t, e.Socket, "late container registered by resync", func(r map[string]api.Container) bool {
		return slices.Contains(r[late].Policies, "shop-web")
	})
	if code, out := p.exec(t, late, "/bin/id"); code != killedExit {
		t.Errorf("container started while the engine was down: /bin/id exited %d (%q) after resync, want killed", code, out)
	}
	if got := ln.received(); len(got) != 0 {
		t.Errorf("listener got %q, want no connection", got)
	}
}

func TestPluginStartedAfterPodsSynchronizes(t *testing.T) {
	c := sharedContainerd(t)
	ln := listen(t)
	e := harness.StartEngine(t, harness.Options{Policies: shopPolicy(ln.port)})
	p := c.runPod(t, "shop", "web-3", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	if code, out := p.exec(t, id, "/bin/id"); code != 0 {
		t.Fatalf("no plugin yet, so nothing registers the container, but /bin/id exited %d (%q)", code, out)
	}

	startPlugin(t, c, e.Socket)
	// The plugin says it is registered with the runtime before the
	// runtime's Synchronize reaches it.
	regs := waitRegistrations(t, e.Socket, "synchronize to register "+id, func(m map[string]api.Container) bool {
		r, ok := m[id]
		return ok && slices.Contains(r.Policies, "shop-web")
	})
	if r := regs[id]; !slices.Contains(r.Policies, "shop-web") {
		t.Fatalf("synchronize did not register %s with shop-web: %+v", id, r)
	}
	if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
		t.Errorf("after synchronize: /bin/id exited %d (%q), want killed", code, out)
	}
}

func TestFailClosed(t *testing.T) {
	c := sharedContainerd(t)
	dir, err := os.MkdirTemp("", "hfn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// An engine that accepts connections and never answers.
	hung, err := net.Listen("unix", filepath.Join(dir, "hung.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			conn, err := hung.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
		}
	}()

	for _, tc := range []struct{ name, socket, reason string }{
		{"engine hangs", filepath.Join(dir, "hung.sock"), "deadline"},
		{"engine absent", filepath.Join(dir, "absent.sock"), "connect to engine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startPlugin(t, c, tc.socket, "--fail-mode", "closed")
			p := c.runPod(t, "shop", "web-4", map[string]string{"app": "web"})
			id := p.create(t, "main", "/bin/sleep", "999")
			err := p.start(id)
			// Past NRI's request timeout containerd would drop the plugin
			// and start the container: a refusal proves the plugin
			// answered in time.
			if err == nil || !strings.Contains(err.Error(), "fail mode is closed") {
				t.Fatalf("start with the engine unavailable: %v, want a fail-closed refusal", err)
			}
			if !strings.Contains(err.Error(), tc.reason) && !strings.Contains(err.Error(), "i/o timeout") {
				t.Errorf("refusal %q does not say why (%s)", err, tc.reason)
			}
			if st := p.status(t, id); st.GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("refused container is running")
			}

			// holdfast's own namespace still starts, through the same plugin.
			own := c.runPod(t, "holdfast-system", "engine-0", nil)
			own.run(t, "main", "/bin/sleep", "999")
		})
	}
}

func TestPreRegisteredInstall(t *testing.T) {
	c := sharedContainerd(t)
	e := harness.StartEngine(t, harness.Options{})
	holdfast := e.Bin
	plugin := harness.Build(t, "./nri-plugin/cmd/holdfast-nri")
	if major, err := install.ContainerdMajor(context.Background(), filepath.Join(c.bin, "containerd")); err != nil || major != 2 {
		t.Fatalf("containerd major version = %d, %v; want 2", major, err)
	}
	args := []string{"--config", c.config, "--containerd", filepath.Join(c.bin, "containerd")}
	run := func(cmd ...string) string {
		t.Helper()
		out, err := exec.Command(holdfast, append(cmd, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("holdfast %s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
		return string(out)
	}
	configBefore, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	out := run("install", "containerd", "--plugin-binary", plugin, "--socket", e.Socket, "--fail-mode", "closed")
	installed := filepath.Join(c.pluginDir, "10-holdfast")
	if !strings.Contains(out, installed) {
		t.Errorf("install output does not name %s:\n%s", installed, out)
	}
	t.Cleanup(func() {
		run("uninstall", "containerd")
		c.restart(t)
	})
	if again := run("install", "containerd", "--plugin-binary", plugin, "--socket", e.Socket, "--fail-mode", "closed"); !strings.Contains(again, "nothing to change") {
		t.Errorf("second install changed something:\n%s", again)
	}
	if after, _ := os.ReadFile(c.config); string(after) != string(configBefore) {
		t.Errorf("containerd 2.x with NRI enabled: install edited the config:\n%s", after)
	}

	// containerd launches pre-registered plugins when it starts.
	c.restart(t)
	p := c.runPod(t, "shop", "web-5", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	r, ok := registrations(t, e.Socket)[id]
	if !ok || r.Source != "nri" {
		t.Fatalf("pre-registered plugin did not register %s: %+v\ncontainerd log:\n%s", id, r, c.log())
	}

	out = run("uninstall", "containerd")
	if _, err := os.Stat(installed); !os.IsNotExist(err) {
		t.Errorf("uninstall left %s (%v):\n%s", installed, err, out)
	}
}

func TestCRIAdoption(t *testing.T) {
	c := sharedContainerd(t)
	mount := harness.CgroupMount(t)
	ln := listen(t)
	p := c.runPod(t, "shop", "web-6", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sleep", "999")
	exited := p.run(t, "done", "/bin/true")
	p.wait(t, exited)

	lister := &cri.Lister{Endpoint: "unix://" + c.address, Cgroups: mount}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := lister.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found *api.Container
	for i := range list {
		switch list[i].ID {
		case id:
			found = &list[i]
		case exited:
			t.Errorf("CRI listing includes the exited container %s", exited)
		}
	}
	wantCgroup, err := cgroup.ID(mount.Dir(c.cgroupParent + "/" + id))
	if err != nil {
		t.Fatal(err)
	}
	if found == nil || found.CgroupID != wantCgroup || found.Namespace != "shop" || found.Pod != "web-6" ||
		found.Labels["app"] != "web" || found.Name != "main" || found.Image != testImage || found.Source != cri.Source {
		t.Fatalf("CRI listing has %+v for %s, want main of shop/web-6 in cgroup %d", found, id, wantCgroup)
	}

	// An engine started with --cri-endpoint adopts it, no NRI involved.
	e := harness.StartEngine(t, harness.Options{
		Policies: shopPolicy(ln.port),
		Args:     []string{"--cri-endpoint", "unix://" + c.address},
	})
	// The first reconcile runs as the engine starts serving.
	regs := waitRegistrations(t, e.Socket, "adoption of "+id+" at start", func(m map[string]api.Container) bool {
		_, ok := m[id]
		return ok
	})
	if r := regs[id]; !slices.Contains(r.Policies, "shop-web") || r.Source != cri.Source {
		t.Fatalf("engine adopted %s at start as %+v, want source cri and policy shop-web", id, r)
	}
	if code, out := p.exec(t, id, "/bin/id"); code != killedExit {
		t.Errorf("adopted container: /bin/id exited %d (%q), want killed", code, out)
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
