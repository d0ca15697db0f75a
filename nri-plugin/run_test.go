package nriplugin

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	nri "github.com/containerd/nri/pkg/api"

	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// startRuntime runs NRI's runtime side, the same library containerd embeds,
// on socket. Its Synchronize offers ctrs.
func startRuntime(t *testing.T, socket string, pods []*nri.PodSandbox, ctrs []*nri.Container) *adaptation.Adaptation {
	t.Helper()
	empty := t.TempDir()
	syncFn := func(ctx context.Context, cb adaptation.SyncCB) error {
		_, err := cb(ctx, pods, ctrs)
		return err
	}
	update := func(context.Context, []*nri.ContainerUpdate) ([]*nri.ContainerUpdate, error) { return nil, nil }
	r, err := adaptation.New("holdfast-test-runtime", "v0", syncFn, update,
		adaptation.WithSocketPath(socket),
		adaptation.WithPluginPath(empty),
		adaptation.WithPluginConfigPath(empty))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatalf("start nri runtime: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// relay forwards unix connections from its own socket to the runtime's, and
// cuts them all at once, the way a dying containerd closes its sockets
// (NRI's Adaptation.Stop leaves external plugins connected).
type relay struct {
	socket string
	mu     sync.Mutex
	conns  []net.Conn
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	r := &relay{socket: filepath.Join(filepath.Dir(target), "relay.sock")}
	l, err := net.Listen("unix", r.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Close()
		r.cut()
	})
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("unix", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return r
}

// cut closes every relayed connection.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// waitSynced waits for the fake engine to receive a Sync.
func waitSynced(t *testing.T, f *fakeEngine, what string) {
	t.Helper()
	select {
	case <-f.synced:
	case <-time.After(30 * time.Second):
		t.Fatalf("engine got no sync: %s", what)
	}
}

func runningContainer(id string, pid int) *nri.Container {
	c := testContainer(id, pid)
	c.State = nri.ContainerState_CONTAINER_RUNNING
	return c
}

func TestRunReconnectsAndResynchronizes(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailClosed)
	pid, _ := startProcess(t)
	socket := filepath.Join(filepath.Dir(socketPath(t)), "nri.sock")
	pods := []*nri.PodSandbox{testPod()}
	rt := startRuntime(t, socket, pods, []*nri.Container{runningContainer("before", pid)})
	relay := startRelay(t, socket)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, p, RunOptions{Socket: relay.socket, Idx: "10", MaxBackoff: 200 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})

	waitSynced(t, f, "first connection")
	if _, ok := f.get("before"); !ok {
		t.Fatal("synchronize did not register the running container")
	}
	// Events travel the real protocol, once the runtime has finished
	// registering the plugin (just after Synchronize).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := rt.StartContainer(context.Background(), &nri.StartContainerRequest{Pod: testPod(), Container: testContainer("event", pid)}); err != nil {
			t.Fatalf("StartContainer through NRI: %v", err)
		}
		if _, ok := f.get("event"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("StartContainer through NRI never reached the plugin")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The runtime restarts with a different set of containers.
	relay.cut()
	rt.Stop()
	startRuntime(t, socket, pods, []*nri.Container{runningContainer("after", pid)})
	waitSynced(t, f, "after the runtime restarted")
	if _, ok := f.get("after"); !ok {
		t.Error("resynchronize did not register the restarted runtime's container")
	}
	for _, gone := range []string{"before", "event"} {
		if _, ok := f.get(gone); ok {
			t.Errorf("resynchronize kept %s, which the restarted runtime no longer runs", gone)
		}
	}
}

func TestRunPreRegisteredReturnsWhenConnectionCloses(t *testing.T) {
	p, f, _ := newPlugin(t, registrar.FailOpen)
	socket := filepath.Join(filepath.Dir(socketPath(t)), "nri.sock")
	startRuntime(t, socket, nil, nil)
	relay := startRelay(t, socket)

	// A launching runtime hands the plugin a connected socket as fd 3;
	// here the test dials and hands over its fd the same way.
	conn, err := net.Dial("unix", relay.socket)
	if err != nil {
		t.Fatal(err)
	}
	file, err := conn.(*net.UnixConn).File()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A bare fd with no *os.File finalizer: the stub takes it over and closes it.
	fd, err := syscall.Dup(int(file.Fd()))
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(nri.PluginSocketEnvVar, fmt.Sprint(fd))
	t.Setenv(nri.PluginNameEnvVar, Name)
	t.Setenv(nri.PluginIdxEnvVar, "10")
	if !PreRegistered() {
		t.Fatal("PreRegistered() false with the socket in the environment")
	}

	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), p, RunOptions{}) }()
	waitSynced(t, f, "pre-registered connection")
	relay.cut()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "pre-registered") {
			t.Errorf("Run returned %v, want an error saying the pre-registered plugin lost its runtime", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pre-registered plugin kept running after the runtime closed its connection")
	}
}

func TestCheckIdx(t *testing.T) {
	for idx, ok := range map[string]bool{"10": true, "00": true, "99": true, "": false, "1": false, "100": false, "1a": false, "-1": false} {
		if err := CheckIdx(idx); (err == nil) != ok {
			t.Errorf("CheckIdx(%q) = %v, want ok %v", idx, err, ok)
		}
	}
}
