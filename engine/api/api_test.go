package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

type fakeHandler struct {
	mu         sync.Mutex
	registered []Container
	// registerCalls counts Register calls, including ones that block.
	registerCalls atomic.Int32
	block         chan struct{}
}

func (f *fakeHandler) Register(ctx context.Context, c Container) (*Container, error) {
	f.registerCalls.Add(1)
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	f.registered = append(f.registered, c)
	f.mu.Unlock()
	c.Policies = []string{"p"}
	return &c, nil
}

func (f *fakeHandler) Unregister(ctx context.Context, id string) error {
	return errors.Join(ErrNotFound, errors.New("container "+id))
}

func (f *fakeHandler) Sync(ctx context.Context, source string, cs []Container) ([]Container, error) {
	return cs, nil
}
func (f *fakeHandler) List(ctx context.Context) ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Container(nil), f.registered...), nil
}
func (f *fakeHandler) Status(ctx context.Context) (*Status, error) { return &Status{ABI: "v1"}, nil }
func (f *fakeHandler) Reload(ctx context.Context) error            { return errors.New("bad policy") }

// countingListener counts the connections the server accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return conn, err
}

// testServer is a Server on a real socket; stop ends it and waits for
// every connection to finish.
type testServer struct {
	sock string
	l    *countingListener
	stop func()
}

// listenTemp listens on a new socket in a temporary directory, closed
// when the test ends.
func listenTemp(t *testing.T) (net.Listener, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "engine.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func startServer(t *testing.T, s *Server) *testServer {
	t.Helper()
	raw, path := listenTemp(t)
	l := &countingListener{Listener: raw}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("serve did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{sock: path, l: l, stop: stop}
}

func serve(t *testing.T, s *Server) string {
	t.Helper()
	return startServer(t, s).sock
}

func newClient(t *testing.T, sock string) *Client {
	c := &Client{Socket: sock}
	t.Cleanup(func() { c.Close() })
	return c
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

func allowAll(uint32) bool { return true }

func TestConnectionReused(t *testing.T) {
	h := &fakeHandler{}
	srv := startServer(t, &Server{Handler: h, AllowUID: allowAll})
	c := newClient(t, srv.sock)
	ctx := context.Background()
	for i := range 20 {
		id := fmt.Sprintf("c%d", i)
		if _, err := c.Register(ctx, Container{ID: id, CgroupID: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		// Engine refusals answer on the same connection; they do not end it.
		if err := c.Unregister(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unregister %s: want ErrNotFound, got %v", id, err)
		}
		if err := c.Reload(ctx); err == nil || !strings.Contains(err.Error(), "bad policy") {
			t.Fatalf("reload: want the handler's reason, got %v", err)
		}
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 20 {
		t.Fatalf("list = %d containers, %v; want 20", len(list), err)
	}
	// Every answered call was accepted before it was answered, so the count is final.
	if n := srv.l.accepted.Load(); n != 1 {
		t.Fatalf("61 calls used %d connections, want 1", n)
	}
}

// idleConn is the client's kept connection.
func idleConn(t *testing.T, c *Client) net.Conn {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle == nil {
		t.Fatal("client kept no idle connection after a successful call")
	}
	return c.idle.Conn
}

// waitClosedByServer blocks until the server closes the client's kept connection.
func waitClosedByServer(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("want the server to close the idle connection (EOF), got %d bytes, %v", n, err)
	}
}

func TestIdleConnectionClosedByServerIsRetried(t *testing.T) {
	srv := startServer(t, &Server{Handler: &fakeHandler{}, AllowUID: allowAll, IdleTimeout: 20 * time.Millisecond})
	c := newClient(t, srv.sock)
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosedByServer(t, idleConn(t, c))
	st, err := c.Status(ctx)
	if err != nil || st.ABI != "v1" {
		t.Fatalf("status after the server closed the idle connection = %+v, %v; want a transparent retry", st, err)
	}
	if n := srv.l.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want 2 (the closed one and the retry)", n)
	}
}

func TestOneShotServerIsRetried(t *testing.T) {
	// A server of the one-request-per-connection protocol closes after each answer.
	l, path := listenTemp(t)
	served := make(chan struct{})
	go func() {
		defer close(served)
		for range 2 {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			var req Request
			if err := json.NewDecoder(conn).Decode(&req); err == nil {
				json.NewEncoder(conn).Encode(Response{Status: &Status{ABI: req.Op}})
			}
			conn.Close()
		}
	}()
	c := newClient(t, path)
	for range 2 {
		st, err := c.Status(context.Background())
		if err != nil || st.ABI != OpStatus {
			t.Fatalf("status from a one-shot server = %+v, %v", st, err)
		}
	}
	<-served
}

func TestSlowHandlerNotRetried(t *testing.T) {
	h := &fakeHandler{block: make(chan struct{})}
	defer close(h.block)
	srv := startServer(t, &Server{Handler: h, AllowUID: allowAll, Timeout: time.Minute})
	c := newClient(t, srv.sock)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// The reused connection times out, which must not look like a stale one.
	_, err := c.Register(ctx, Container{ID: "slow", CgroupID: 1})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), srv.sock) {
		t.Fatalf("want a deadline error naming the socket, got %v", err)
	}
	// A second call on the client, with time to spare, still works.
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("status after a timed-out call: %v", err)
	}
	srv.stop() // every connection is finished now
	if n := h.registerCalls.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (no retry after a deadline)", n)
	}
	if n := srv.l.accepted.Load(); n != 2 {
		t.Fatalf("accepted %d connections, want 2 (first, and one after the timed-out one was dropped)", n)
	}
}

func TestConcurrentCalls(t *testing.T) {
	h := &fakeHandler{}
	sock := serve(t, &Server{Handler: h, AllowUID: allowAll})
	c := newClient(t, sock)
	const workers, calls = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				id := fmt.Sprintf("w%d-%d", w, i)
				got, err := c.Register(context.Background(), Container{ID: id, CgroupID: 1})
				if err != nil {
					errs <- err
					continue
				}
				if got.ID != id {
					errs <- fmt.Errorf("register %s answered for %s", id, got.ID)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, err := c.List(context.Background())
	if err != nil || len(list) != workers*calls {
		t.Fatalf("list = %d containers, %v; want %d", len(list), err, workers*calls)
	}
}

// exchangeRaw writes payload on conn and reads one response line.
func exchangeRaw(t *testing.T, conn net.Conn, r *bufio.Reader, payload string) string {
	t.Helper()
	go conn.Write([]byte(payload))
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read response to %.40q: %v", payload, err)
	}
	return line
}

func TestBadRequestClosesReusedConnection(t *testing.T) {
	sock := serve(t, &Server{Handler: &fakeHandler{}, AllowUID: allowAll})
	for _, tc := range []struct{ name, payload, want string }{
		{"malformed", "{not json\n", "malformed request"},
		{"oversized", `{"op":"register","container":{"id":"` + strings.Repeat("x", MaxMessageSize+10), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(conn)
			// Two good requests first: the connection is reused.
			for range 2 {
				if got := exchangeRaw(t, conn, r, `{"op":"status"}`+"\n"); !strings.Contains(got, `"abi":"v1"`) {
					t.Fatalf("status response %q", got)
				}
			}
			if got := exchangeRaw(t, conn, r, tc.payload); !strings.Contains(got, tc.want) {
				t.Fatalf("response %q does not contain %q", got, tc.want)
			}
			// Closed with the rest of the request unread, the socket may report a reset.
			if rest, err := io.ReadAll(r); len(rest) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
				t.Fatalf("want the server to close after a bad request, read %q, %v", rest, err)
			}
		})
	}
}

func TestOversizedRequestThenNextCall(t *testing.T) {
	srv := startServer(t, &Server{Handler: &fakeHandler{}, AllowUID: allowAll})
	c := newClient(t, srv.sock)
	ctx := context.Background()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
	huge := Container{ID: "huge", Labels: map[string]string{"big": strings.Repeat("x", MaxMessageSize)}}
	_, err := c.Register(ctx, huge)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("want the engine's size refusal, got %v", err)
	}
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("status after an oversized request: %v", err)
	}
}

func TestPeerRefusedEveryCall(t *testing.T) {
	h := &fakeHandler{}
	srv := startServer(t, &Server{Handler: h, AllowUID: func(uint32) bool { return false }})
	c := newClient(t, srv.sock)
	for range 3 {
		_, err := c.Register(context.Background(), Container{ID: "a", CgroupID: 1})
		if err == nil || !strings.Contains(err.Error(), "permission denied: peer uid") {
			t.Fatalf("want a refusal naming the peer uid, got %v", err)
		}
	}
	srv.stop()
	if n := h.registerCalls.Load(); n != 0 {
		t.Fatalf("refused peer reached the handler %d times", n)
	}
}

func TestShutdownEndsIdleConnections(t *testing.T) {
	srv := startServer(t, &Server{Handler: &fakeHandler{}, AllowUID: allowAll, IdleTimeout: time.Hour})
	c := newClient(t, srv.sock)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := idleConn(t, c)
	srv.stop() // fails the test if Serve waits on the idle connection
	waitClosedByServer(t, conn)
}

func TestCloseReleasesIdleConnection(t *testing.T) {
	srv := startServer(t, &Server{Handler: &fakeHandler{}, AllowUID: allowAll})
	c := &Client{Socket: srv.sock}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := idleConn(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("idle connection after Close: read gave %v, want net.ErrClosed", err)
	}
	// Calls after Close still work, without keeping a connection.
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.idle != nil {
		t.Fatal("client kept a connection after Close")
	}
}

func TestPartialResponseNotRetried(t *testing.T) {
	// A raw engine that breaks off its second answer on the first connection
	// and answers fully on any other, so a wrong retry would succeed.
	l, path := listenTemp(t)
	go func() {
		for first := true; ; first = false {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				dec := json.NewDecoder(conn)
				for n := 1; ; n++ {
					var req Request
					if dec.Decode(&req) != nil {
						return
					}
					if first && n == 2 {
						conn.Write([]byte(`{"status":{"abi":`))
						return
					}
					json.NewEncoder(conn).Encode(Response{Status: &Status{ABI: "v1"}})
				}
			}()
		}
	}()
	c := newClient(t, path)
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := c.Status(context.Background())
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "read status response from "+path) {
		t.Fatalf("want the broken-off answer reported, not retried; got %v", err)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("status on a fresh connection: %v", err)
	}
}

// TestHookLineDecodesAsHookRequest: the hand-written OpHook line is the
// request the server decodes, state untouched; bad input is refused
// before anything is sent.
func TestHookLineDecodesAsHookRequest(t *testing.T) {
	state := `{"ociVersion":"1.0.2","id":"c\"1","status":"creating","pid":7,"bundle":"/b","annotations":{"k":"v\n"}}`
	line, err := oneshot.Line("createContainer", []byte(state))
	if err != nil {
		t.Fatal(err)
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		t.Fatalf("line %s: %v", line, err)
	}
	if req.Op != OpHook || req.Hook == nil || req.Hook.Stage != "createContainer" || string(req.Hook.State) != state {
		t.Fatalf("decoded %+v from %s", req, line)
	}
	for _, bad := range []HookRun{
		{Stage: "createContainer", State: json.RawMessage(`{"id":`)},
		{Stage: "createContainer", State: json.RawMessage(`{} {}`)},
		{Stage: `x","op":"reload`, State: json.RawMessage(`{}`)},
	} {
		if line, err := oneshot.Line(bad.Stage, bad.State); err == nil {
			t.Errorf("oneshot.Line(%q, %q) = %s, want an error", bad.Stage, bad.State, line)
		}
	}
}
