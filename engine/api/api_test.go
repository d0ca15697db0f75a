package api

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeHandler struct {
	registered []Container
	block      chan struct{}
}

func (f *fakeHandler) Register(ctx context.Context, c Container) (*Container, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.registered = append(f.registered, c)
	c.Policies = []string{"p"}
	return &c, nil
}

func (f *fakeHandler) Unregister(ctx context.Context, id string) error {
	return errors.Join(ErrNotFound, errors.New("container "+id))
}

func (f *fakeHandler) Sync(ctx context.Context, source string, cs []Container) ([]Container, error) {
	return cs, nil
}
func (f *fakeHandler) List(ctx context.Context) ([]Container, error) { return f.registered, nil }
func (f *fakeHandler) Status(ctx context.Context) (*Status, error)   { return &Status{ABI: "v1"}, nil }
func (f *fakeHandler) Reload(ctx context.Context) error              { return errors.New("bad policy") }

func serve(t *testing.T, s *Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "engine.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return path
}

func TestRoundTrip(t *testing.T) {
	h := &fakeHandler{}
	sock := serve(t, &Server{Handler: h, AllowUID: func(uint32) bool { return true }})
	c := &Client{Socket: sock}
	ctx := context.Background()

	got, err := c.Register(ctx, Container{ID: "a", CgroupID: 7, Labels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "a" || got.CgroupID != 7 || len(got.Policies) != 1 {
		t.Fatalf("register returned %+v", got)
	}
	if len(h.registered) != 1 || h.registered[0].Labels["app"] != "web" {
		t.Fatalf("handler saw %+v", h.registered)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %v, %v", list, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.ABI != "v1" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	err = c.Unregister(ctx, "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("unregister unknown: want ErrNotFound, got %v", err)
	}
	if err := c.Reload(ctx); err == nil || !strings.Contains(err.Error(), "bad policy") {
		t.Fatalf("reload: want the handler's reason, got %v", err)
	}
}

func TestPeerRefused(t *testing.T) {
	sock := serve(t, &Server{Handler: &fakeHandler{}, AllowUID: func(uint32) bool { return false }})
	_, err := (&Client{Socket: sock}).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "permission denied: peer uid") {
		t.Fatalf("want a refusal naming the peer uid, got %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	sock := serve(t, &Server{Handler: &fakeHandler{}, AllowUID: func(uint32) bool { return true }})
	send := func(payload string) string {
		t.Helper()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go conn.Write([]byte(payload))
		buf := make([]byte, 4096)
		n, _ := conn.Read(buf)
		return string(buf[:n])
	}
	for _, tc := range []struct{ name, payload, want string }{
		{"malformed", "{not json\n", "malformed request"},
		{"unknown op", `{"op":"explode"}` + "\n", `unknown op \"explode\"`},
		{"register without container", `{"op":"register"}` + "\n", "request has no container"},
		{"unregister without id", `{"op":"unregister"}` + "\n", "request has no container id"},
		{"sync without source", `{"op":"sync"}` + "\n", "request has no source"},
		{"oversized", `{"op":"register","container":{"id":"` + strings.Repeat("x", MaxMessageSize+10), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(tc.payload); !strings.Contains(got, tc.want) {
				t.Fatalf("response %q does not contain %q", got, tc.want)
			}
		})
	}
}

func TestClientDeadline(t *testing.T) {
	h := &fakeHandler{block: make(chan struct{})}
	defer close(h.block)
	sock := serve(t, &Server{Handler: h, AllowUID: func(uint32) bool { return true }, Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := (&Client{Socket: sock}).Register(ctx, Container{ID: "slow", CgroupID: 1})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error from an engine that never answers, got %v", err)
	}
}

func TestClientNoEngine(t *testing.T) {
	_, err := (&Client{Socket: filepath.Join(t.TempDir(), "absent.sock")}).Status(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connect to engine at") {
		t.Fatalf("want a connect error naming the socket, got %v", err)
	}
}
