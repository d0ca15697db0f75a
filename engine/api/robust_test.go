package api

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
)

// cannotEnforce answers every registration with ErrCannotEnforce.
type cannotEnforce struct{ fakeHandler }

func (*cannotEnforce) Register(ctx context.Context, c Container) (*Container, error) {
	return nil, fmt.Errorf("register container %s: %w: map cgroup_rules is full", c.ID, ErrCannotEnforce)
}

func TestCannotEnforceCode(t *testing.T) {
	ts := startServer(t, &Server{Handler: &cannotEnforce{}, AllowUID: func(uint32) bool { return true }})
	c := &Client{Socket: ts.sock}
	defer c.Close()
	_, err := c.Register(context.Background(), Container{ID: "x", CgroupID: 1})
	if !errors.Is(err, ErrCannotEnforce) || errors.Is(err, ErrNotFound) {
		t.Fatalf("register: %v, want ErrCannotEnforce", err)
	}
	err = c.Unregister(context.Background(), "x")
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrCannotEnforce) {
		t.Fatalf("unregister: %v, want ErrNotFound only", err)
	}
}

// Listen leaves a socket alone while something accepts on it, and replaces
// one nobody listens on.
func TestListenLeavesLiveSocket(t *testing.T) {
	ts := startServer(t, &Server{Handler: &fakeHandler{}, AllowUID: func(uint32) bool { return true }})
	if l, err := Listen(ts.sock); !errors.Is(err, ErrSocketInUse) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("second Listen on a live socket: %v, want ErrSocketInUse", err)
	}
	if _, err := (&Client{Socket: ts.sock}).Status(context.Background()); err != nil {
		t.Fatalf("the live server stopped answering: %v", err)
	}
	ts.stop()
	// A socket file nobody accepts on is stale and replaced.
	if err := os.WriteFile(ts.sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ts.sock)
	if err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	l.Close()
}
