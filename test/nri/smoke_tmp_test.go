package nri_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

type memEngine struct {
	mu sync.Mutex
	m  map[string]api.Container
}

func (f *memEngine) Register(_ context.Context, c api.Container) (*api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[c.ID] = c
	return &c, nil
}
func (f *memEngine) Unregister(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, id)
	return nil
}
func (f *memEngine) Sync(_ context.Context, s string, cs []api.Container) ([]api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.m {
		if c.Source == s {
			delete(f.m, id)
		}
	}
	for _, c := range cs {
		f.m[c.ID] = c
	}
	return cs, nil
}
func (f *memEngine) List(context.Context) ([]api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Container
	for _, c := range f.m {
		out = append(out, c)
	}
	return out, nil
}
func (f *memEngine) Status(context.Context) (*api.Status, error) { return &api.Status{}, nil }
func (f *memEngine) Reload(context.Context) error                { return nil }

func TestSmokeTmp(t *testing.T) {
	c := sharedContainerd(t)
	dir, _ := os.MkdirTemp("", "hfs-")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "e.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&api.Server{Handler: &memEngine{m: map[string]api.Container{}}}).Serve(ctx, l)
	startPlugin(t, c, sock)
	p := c.runPod(t, "shop", "web-0", map[string]string{"app": "web"})
	id := p.run(t, "main", "/bin/sh", "-c", "id; echo hello")
	st := p.wait(t, id)
	t.Logf("exit %d reason %s output %q", st.GetExitCode(), st.GetReason(), p.output(t, "main"))
	regs := registrations(t, sock)
	t.Logf("regs %+v", regs)
	if _, ok := regs[id]; !ok {
		t.Fatal("not registered")
	}
	id2 := p.run(t, "sleeper", "/bin/sleep", "100")
	code, out := p.exec(t, id2, "/bin/id")
	t.Logf("exec: %d %s", code, out)
	p.removeContainer(t, id2)
	if _, ok := registrations(t, sock)[id2]; ok {
		t.Fatal("still registered")
	}
}
