package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	nri "github.com/containerd/nri/pkg/api"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/test/harness"
	"github.com/holdfast-dev/holdfast/test/require"
)

// fakeEngine is an api.Handler that records what the plugin asked for. It
// is served over a real socket by api.Server.
type fakeEngine struct {
	mu         sync.Mutex
	registered map[string]api.Container
	unregister []string
	syncs      [][]api.Container
	// block makes Register wait for the request's context to end.
	block bool
	// failWith makes Register fail.
	failWith error
	synced   chan struct{}
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{registered: map[string]api.Container{}, synced: make(chan struct{}, 16)}
}

func (f *fakeEngine) Register(ctx context.Context, c api.Container) (*api.Container, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.registered[c.ID] = c
	c.Policies = []string{"test-policy"}
	return &c, nil
}

func (f *fakeEngine) Unregister(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unregister = append(f.unregister, id)
	if _, ok := f.registered[id]; !ok {
		return fmt.Errorf("unregister %s: %w", id, api.ErrNotFound)
	}
	delete(f.registered, id)
	return nil
}

func (f *fakeEngine) Sync(_ context.Context, source string, cs []api.Container) ([]api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.registered {
		if c.Source == source {
			delete(f.registered, id)
		}
	}
	for _, c := range cs {
		f.registered[c.ID] = c
	}
	f.syncs = append(f.syncs, slices.Clone(cs))
	select {
	case f.synced <- struct{}{}:
	default:
	}
	return cs, nil
}

func (f *fakeEngine) List(context.Context) ([]api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Container
	for _, c := range f.registered {
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeEngine) Status(context.Context) (*api.Status, error) { return &api.Status{}, nil }

func (f *fakeEngine) Reload(context.Context) error { return nil }

func (f *fakeEngine) get(id string) (api.Container, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.registered[id]
	return c, ok
}

// serve runs a fake engine on socket until the test ends.
func serve(t *testing.T, f *fakeEngine, socket string) {
	t.Helper()
	l, err := api.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &api.Server{Handler: f, AllowUID: func(uint32) bool { return true }, Log: quietLog()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, l)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func socketPath(t *testing.T) string {
	// Unix socket paths are short; t.TempDir() names can be long.
	dir, err := os.MkdirTemp("", "hf-nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "engine.sock")
}

func newPlugin(t *testing.T, mode registrar.FailMode) (*Plugin, *fakeEngine, string) {
	t.Helper()
	m, err := cgroup.Detect()
	require.Privileged(t, "cgroup v2", err)
	f := newFakeEngine()
	sock := socketPath(t)
	serve(t, f, sock)
	p := &Plugin{
		Engine:         &api.Client{Socket: sock},
		Settings:       registrar.Settings{FailMode: mode},
		Cgroups:        m,
		Log:            quietLog(),
		RequestTimeout: 2 * time.Second,
	}
	return p, f, sock
}

// startProcess runs a real process in a cgroup of its own, standing in for
// a container's init, and returns its pid and v2 cgroup path.
func startProcess(t *testing.T) (int, string) {
	t.Helper()
	require.Root(t)
	cg := harness.NewCgroup(t)
	return cg.Start(t, "sleep", "300").Process.Pid, cg.Path
}

func testPod() *nri.PodSandbox {
	return &nri.PodSandbox{
		Id: "pod-1", Name: "web-0", Uid: "uid-1", Namespace: "shop",
		Labels: map[string]string{"app": "web"},
	}
}

func testContainer(id string, pid int) *nri.Container {
	return &nri.Container{
		Id: id, PodSandboxId: "pod-1", Name: "app", Pid: uint32(pid),
		State: nri.ContainerState_CONTAINER_CREATED,
		Image: &nri.Image{Name: "example.test/web:1"},
	}
}

func TestStartContainerRegistersIdentity(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailClosed)
	pid, path := startProcess(t)
	dir := p.Cgroups.Dir(path)
	wantID, err := cgroup.ID(dir)
	if err != nil {
		t.Fatal(err)
	}

	if err := p.StartContainer(context.Background(), testPod(), testContainer("c1", pid)); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	got, ok := f.get("c1")
	if !ok {
		t.Fatal("engine got no registration for c1")
	}
	if got.CgroupID != wantID {
		t.Errorf("cgroup id = %d, want %d (of %s)", got.CgroupID, wantID, dir)
	}
	if got.CgroupPath != path {
		t.Errorf("cgroup path = %q, want %q", got.CgroupPath, path)
	}
	own, err := cgroup.ID(p.Cgroups.Dir("/"))
	if err == nil && got.CgroupID == own {
		t.Fatal("registered the root cgroup, not the container's")
	}
	want := api.Container{
		ID: "c1", CgroupID: wantID, CgroupPath: path, Namespace: "shop", Pod: "web-0",
		PodUID: "uid-1", Labels: map[string]string{"app": "web"}, Name: "app",
		Image: "example.test/web:1", Source: Source, Pid: pid,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("registered\n %+v\nwant\n %+v", got, want)
	}
}

func TestStartContainerFallsBackToCgroupsPath(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailClosed)
	_, path := startProcess(t)
	wantID, err := cgroup.ID(p.Cgroups.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	ctr := testContainer("c2", 0)
	ctr.Image = nil
	ctr.Annotations = map[string]string{imageAnnotation: "example.test/annotated:2"}
	ctr.Linux = &nri.LinuxContainer{CgroupsPath: path}

	if err := p.StartContainer(context.Background(), testPod(), ctr); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	got, ok := f.get("c2")
	if !ok {
		t.Fatal("engine got no registration for c2")
	}
	if got.CgroupID != wantID || got.CgroupPath != path {
		t.Errorf("cgroup = %d %q, want %d %q", got.CgroupID, got.CgroupPath, wantID, path)
	}
	if got.Image != "example.test/annotated:2" {
		t.Errorf("image = %q, want the CRI annotation's", got.Image)
	}
}

func TestStartContainerWithoutCgroup(t *testing.T) {
	for _, mode := range []registrar.FailMode{registrar.FailClosed, registrar.FailOpen} {
		t.Run(string(mode), func(t *testing.T) {
			p, f, _ := newPlugin(t, mode)
			ctr := testContainer("gone", 0)
			ctr.Linux = &nri.LinuxContainer{CgroupsPath: "/holdfast-test-no-such-cgroup"}
			err := p.StartContainer(context.Background(), testPod(), ctr)
			if mode == registrar.FailClosed {
				if err == nil || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "holdfast-test-no-such-cgroup") {
					t.Fatalf("fail-closed StartContainer error = %v, want one naming the container and its cgroup", err)
				}
			} else if err != nil {
				t.Fatalf("fail-open StartContainer: %v", err)
			}
			if _, ok := f.get("gone"); ok {
				t.Error("engine got a registration for a container without a cgroup")
			}
		})
	}
}

// An engine that answers that it cannot enforce a container is not an
// unreachable engine: fail-open does not let the container start.
func TestEngineCannotEnforce(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailOpen)
	p.Settings.EngineNamespace = registrar.DefaultEngineNamespace
	p.Settings.FailOpenNamespaces = []string{"kube-system"}
	f.failWith = fmt.Errorf("register container x: %w: map cgroup_rules holds its capacity of 4 entries", api.ErrCannotEnforce)
	pid, _ := startProcess(t)
	err := p.StartContainer(context.Background(), testPod(), testContainer("c-full", pid))
	if err == nil || !strings.Contains(err.Error(), "capacity of 4") || !strings.Contains(err.Error(), "cannot enforce") {
		t.Fatalf("StartContainer error = %v, want a refusal with the engine's reason", err)
	}
	for _, ns := range []string{registrar.DefaultEngineNamespace, "kube-system"} {
		pod := testPod()
		pod.Namespace = ns
		if err := p.StartContainer(context.Background(), pod, testContainer("c-"+ns, pid)); err != nil {
			t.Errorf("container in exempt namespace %s refused: %v", ns, err)
		}
	}
	// Any other engine error still fails open.
	f.mu.Lock()
	f.failWith = errors.New("something else")
	f.mu.Unlock()
	if err := p.StartContainer(context.Background(), testPod(), testContainer("c-other", pid)); err != nil {
		t.Errorf("fail-open refused on an ordinary engine error: %v", err)
	}
}

func TestEngineUnreachable(t *testing.T) {
	t.Run("closed refuses with the reason", func(t *testing.T) {
		p, _, _ := newPlugin(t, registrar.FailClosed)
		pid, _ := startProcess(t)
		p.Engine = &api.Client{Socket: socketPath(t)}
		err := p.StartContainer(context.Background(), testPod(), testContainer("c3", pid))
		if err == nil || !strings.Contains(err.Error(), "fail mode is closed") || !strings.Contains(err.Error(), "connect to engine") {
			t.Fatalf("StartContainer error = %v, want a refusal naming the unreachable engine", err)
		}
	})
	t.Run("closed lets exempt namespaces start", func(t *testing.T) {
		p, _, _ := newPlugin(t, registrar.FailClosed)
		pid, _ := startProcess(t)
		p.Engine = &api.Client{Socket: socketPath(t)}
		p.Settings.EngineNamespace = registrar.DefaultEngineNamespace
		p.Settings.FailOpenNamespaces = []string{"kube-system"}
		for _, ns := range []string{registrar.DefaultEngineNamespace, "kube-system"} {
			pod := testPod()
			pod.Namespace = ns
			if err := p.StartContainer(context.Background(), pod, testContainer("c-"+ns, pid)); err != nil {
				t.Errorf("container in %s refused: %v", ns, err)
			}
		}
		if err := p.StartContainer(context.Background(), testPod(), testContainer("c-shop", pid)); err == nil {
			t.Error("container in shop started although the engine is unreachable and the mode is closed")
		}
	})
	t.Run("open starts and registers once the engine is back", func(t *testing.T) {
		p, _, _ := newPlugin(t, registrar.FailOpen)
		pid, _ := startProcess(t)
		sock := socketPath(t)
		p.Engine = &api.Client{Socket: sock}
		if err := p.StartContainer(context.Background(), testPod(), testContainer("c4", pid)); err != nil {
			t.Fatalf("fail-open StartContainer: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Resync(ctx)
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		f := newFakeEngine()
		serve(t, f, sock)
		select {
		case <-f.synced:
		case <-time.After(30 * time.Second):
			t.Fatal("resync never reached the engine that came back")
		}
		if _, ok := f.get("c4"); !ok {
			t.Fatal("resync did not register the container started while the engine was down")
		}
	})
}

func TestEngineHangsAnswerInsideRequestTimeout(t *testing.T) {
	for _, mode := range []registrar.FailMode{registrar.FailClosed, registrar.FailOpen} {
		t.Run(string(mode), func(t *testing.T) {
			p, f, _ := newPlugin(t, mode)
			pid, _ := startProcess(t)
			f.mu.Lock()
			f.block = true
			f.mu.Unlock()
			p.RequestTimeout = nri.DefaultPluginRequestTimeout
			// The runtime's own deadline: the plugin must answer before it.
			ctx, cancel := context.WithTimeout(context.Background(), p.RequestTimeout)
			defer cancel()
			err := p.StartContainer(ctx, testPod(), testContainer("c5", pid))
			if ctx.Err() != nil {
				t.Fatalf("answered only after the runtime's request timeout (err %v)", err)
			}
			// The socket deadline and the context expire together; either may report it.
			timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
			if mode == registrar.FailClosed && !timedOut {
				t.Fatalf("fail-closed error = %v, want the engine deadline", err)
			}
			if mode == registrar.FailOpen && err != nil {
				t.Fatalf("fail-open StartContainer: %v", err)
			}
		})
	}
}

func TestStopAndRemoveUnregister(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailClosed)
	pid, _ := startProcess(t)
	for _, id := range []string{"a", "b"} {
		if err := p.StartContainer(context.Background(), testPod(), testContainer(id, pid)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if _, err := p.StopContainer(ctx, testPod(), testContainer("a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveContainer(ctx, testPod(), testContainer("a", 0)); err != nil {
		t.Fatal(err)
	}
	// b is removed without a stop event first.
	if err := p.RemoveContainer(ctx, testPod(), testContainer("b", 0)); err != nil {
		t.Fatal(err)
	}
	// A container the engine never knew is not an error.
	if _, err := p.StopContainer(ctx, testPod(), testContainer("never", 0)); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	calls := slices.Clone(f.unregister)
	left := len(f.registered)
	f.mu.Unlock()
	if want := []string{"a", "b", "never"}; !slices.Equal(calls, want) {
		t.Errorf("unregister calls = %v, want %v", calls, want)
	}
	if left != 0 {
		t.Errorf("%d registrations left", left)
	}
	p.mu.Lock()
	stale := p.stale
	p.mu.Unlock()
	if stale {
		t.Error("an unknown container's unregister left a resync pending")
	}
}

func TestSynchronizeRegistersLiveContainersOnly(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailClosed)
	pid, _ := startProcess(t)
	// A registration of a container that no longer exists must go.
	if err := p.StartContainer(context.Background(), testPod(), testContainer("old", pid)); err != nil {
		t.Fatal(err)
	}
	running := testContainer("running", pid)
	running.State = nri.ContainerState_CONTAINER_RUNNING
	stopped := testContainer("stopped", 0)
	stopped.State = nri.ContainerState_CONTAINER_STOPPED
	created := testContainer("created", 0)
	vanished := testContainer("vanished", 0)
	vanished.State = nri.ContainerState_CONTAINER_RUNNING
	vanished.Linux = &nri.LinuxContainer{CgroupsPath: "/holdfast-test-no-such-cgroup"}

	if _, err := p.Synchronize(context.Background(), []*nri.PodSandbox{testPod()},
		[]*nri.Container{running, stopped, created, vanished}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.syncs) != 1 {
		t.Fatalf("engine got %d syncs, want 1", len(f.syncs))
	}
	var ids []string
	for _, c := range f.syncs[0] {
		ids = append(ids, c.ID)
		if c.Namespace != "shop" || c.Labels["app"] != "web" || c.Source != Source {
			t.Errorf("synced %s without its pod identity: %+v", c.ID, c)
		}
	}
	if !slices.Equal(ids, []string{"running"}) {
		t.Errorf("synced %v, want [running]", ids)
	}
	if _, ok := f.registered["old"]; ok {
		t.Error("sync kept the registration of a container the runtime no longer runs")
	}
}

func TestConfigure(t *testing.T) {
	p, _, sock := newPlugin(t, registrar.FailOpen)
	other := socketPath(t)
	config := "engineSocket: " + other + "\nfailMode: closed\nfailOpenNamespaces: [kube-system]\nengineNamespace: sec\n"
	if _, err := p.Configure(context.Background(), config, "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	if c, ok := p.Engine.(*api.Client); !ok || c.Socket != other || p.Settings.FailMode != registrar.FailClosed ||
		!slices.Equal(p.Settings.FailOpenNamespaces, []string{"kube-system"}) || p.Settings.EngineNamespace != "sec" {
		t.Errorf("after configure: engine %+v, fail mode %s, fail-open %v, engine namespace %q",
			p.Engine, p.Settings.FailMode, p.Settings.FailOpenNamespaces, p.Settings.EngineNamespace)
	}

	p.Engine = &api.Client{Socket: sock}
	p.Settings.FailMode = registrar.FailOpen
	p.Locked = map[string]bool{"engineSocket": true, "failMode": true}
	if _, err := p.Configure(context.Background(), `{"engineSocket": "`+other+`", "failMode": "closed"}`, "containerd", "v2"); err != nil {
		t.Fatal(err)
	}
	if c := p.Engine.(*api.Client); c.Socket != sock || p.Settings.FailMode != registrar.FailOpen {
		t.Errorf("runtime config overrode command-line settings: %s %s", c.Socket, p.Settings.FailMode)
	}

	for _, bad := range []struct{ config, want string }{
		{"failMode: sometimes", `"sometimes"`},
		{"engineSocket: relative.sock", "relative.sock"},
		{"engineSocket: /a\nbogus: 1", "bogus"},
		{"failOpenNamespaces: ['']", "empty name"},
	} {
		_, err := p.Configure(context.Background(), bad.config, "containerd", "v2")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Configure(%q) error = %v, want one naming %s", bad.config, err, bad.want)
		}
	}
}
