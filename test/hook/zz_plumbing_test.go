package hook_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

type plumbEngine struct {
	mu  sync.Mutex
	got []api.Container
	un  []string
}

func (f *plumbEngine) Register(_ context.Context, c api.Container) (*api.Container, error) {
	f.mu.Lock(); defer f.mu.Unlock(); f.got = append(f.got, c); return &c, nil
}
func (f *plumbEngine) Unregister(_ context.Context, id string) error {
	f.mu.Lock(); defer f.mu.Unlock(); f.un = append(f.un, id); return nil
}
func (f *plumbEngine) Sync(context.Context, string, []api.Container) ([]api.Container, error) { return nil, errors.New("x") }
func (f *plumbEngine) List(context.Context) ([]api.Container, error)                          { return nil, errors.New("x") }
func (f *plumbEngine) Status(context.Context) (*api.Status, error)                            { return nil, errors.New("x") }
func (f *plumbEngine) Reload(context.Context) error                                           { return errors.New("x") }

func TestPlumbing(t *testing.T) {
	r := newRuncEnv(t)
	bin := hookBinary(t)
	f := &plumbEngine{}
	sock := filepath.Join(t.TempDir(), "e.sock")
	l, err := api.Listen(sock)
	if err != nil { t.Fatal(err) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&api.Server{Handler: f}).Serve(ctx, l)
	for _, st := range []struct{ stage string; ns bool }{{"createContainer", false}, {"createContainer", true}, {"createRuntime", false}} {
		logPath := filepath.Join(t.TempDir(), "hook.log")
		c := r.bundle(t, bundleOpts{Args: []string{"/bin/echo", "hi"}, Annotations: lockedAnnotations("p"), CgroupNS: st.ns, Hooks: hookEntries(bin, st.stage, sock, logPath, "--fail-mode", "closed")})
		res := c.run(t)
		t.Logf("%s ns=%v: %v", st.stage, st.ns, res)
		for _, l := range hookLog(t, logPath) { t.Logf("  log: %v", l) }
	}
	t.Logf("registered: %+v", f.got)
	t.Logf("unregistered: %v", f.un)
}

func TestPlumbingPodman(t *testing.T) {
	bin := hookBinary(t)
	f := &plumbEngine{}
	sock := filepath.Join(t.TempDir(), "e.sock")
	l, err := api.Listen(sock)
	if err != nil { t.Fatal(err) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&api.Server{Handler: f}).Serve(ctx, l)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "hook.log")
	_, err = hooksdInstall(t, bin, filepath.Join(dir, "hooks.d"), filepath.Join(dir, "lib"), sock, logPath)
	if err != nil { t.Fatal(err) }
	p := newPodman(t, filepath.Join(dir, "hooks.d"))
	res := p.run(t, "plumb", map[string]string{"io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": "pp", "io.kubernetes.cri-o.Labels": `{"app":"locked","x":"y"}`}, "/bin/echo", "hi")
	t.Logf("podman: %v", res)
	for _, l := range hookLog(t, logPath) { t.Logf("  log: %v", l) }
	t.Logf("registered: %+v", f.got)
	t.Logf("unregistered: %v", f.un)
}
