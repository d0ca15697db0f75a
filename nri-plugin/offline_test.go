package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// TestEngineUnreachableRegistersOffline: with a slow path, a container the
// engine cannot take is registered by the plugin itself within the NRI
// request's budget, its removal recorded the same way; an engine that
// answers with a refusal is never bypassed.
func TestEngineUnreachableRegistersOffline(t *testing.T) {
	t.Run("absent engine", func(t *testing.T) {
		p, _, _ := newPlugin(t, registrar.FailClosed)
		pid, _ := startProcess(t)
		p.Engine = &api.Client{Socket: socketPath(t)}
		slow := newFakeEngine()
		p.Offline = slow
		if err := p.StartContainer(context.Background(), testPod(), testContainer("c-off", pid)); err != nil {
			t.Fatalf("StartContainer with the engine absent and a slow path: %v", err)
		}
		got, ok := slow.get("c-off")
		if !ok || got.Namespace != "shop" || got.Source != Source || got.CgroupID == 0 {
			t.Fatalf("slow path got %+v (found %v)", got, ok)
		}
		if _, err := p.StopContainer(context.Background(), testPod(), testContainer("c-off", pid)); err != nil {
			t.Fatal(err)
		}
		if _, ok := slow.get("c-off"); ok {
			t.Error("stopping the container with the engine absent did not unregister it through the slow path")
		}
	})
	t.Run("hung engine leaves the slow path its share", func(t *testing.T) {
		p, f, _ := newPlugin(t, registrar.FailClosed)
		pid, _ := startProcess(t)
		f.mu.Lock()
		f.block = true
		f.mu.Unlock()
		slow := newFakeEngine()
		p.Offline = slow
		ctx, cancel := context.WithTimeout(context.Background(), p.RequestTimeout)
		defer cancel()
		start := time.Now()
		if err := p.StartContainer(ctx, testPod(), testContainer("c-hung", pid)); err != nil {
			t.Fatalf("StartContainer with a hung engine and a slow path: %v", err)
		}
		if _, ok := slow.get("c-hung"); !ok {
			t.Fatalf("slow path did not register the container (after %v)", time.Since(start))
		}
	})
	t.Run("refusing engine", func(t *testing.T) {
		p, f, _ := newPlugin(t, registrar.FailClosed)
		pid, _ := startProcess(t)
		f.mu.Lock()
		f.failWith = errors.New("registry is read-only")
		f.mu.Unlock()
		slow := newFakeEngine()
		p.Offline = slow
		err := p.StartContainer(context.Background(), testPod(), testContainer("c-ref", pid))
		if err == nil || !strings.Contains(err.Error(), "registry is read-only") {
			t.Fatalf("StartContainer error = %v, want the engine's refusal", err)
		}
		if _, ok := slow.get("c-ref"); ok {
			t.Error("the slow path registered a container the engine refused")
		}
	})
	t.Run("slow path cannot enforce", func(t *testing.T) {
		p, _, _ := newPlugin(t, registrar.FailOpen)
		pid, _ := startProcess(t)
		p.Engine = &api.Client{Socket: socketPath(t)}
		slow := newFakeEngine()
		slow.failWith = fmt.Errorf("%w: map cgroup_rules is full", api.ErrCannotEnforce)
		p.Offline = slow
		err := p.StartContainer(context.Background(), testPod(), testContainer("c-full", pid))
		if err == nil || !strings.Contains(err.Error(), "map cgroup_rules is full") {
			t.Fatalf("StartContainer error = %v, want a refusal even in open mode", err)
		}
	})
}
