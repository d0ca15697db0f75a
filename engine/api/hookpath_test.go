package api

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// hookRecorder takes hook runs and records them; each answer's
// AfterAnswer work waits for release, if set.
type hookRecorder struct {
	fakeHandler
	mu      sync.Mutex
	runs    []HookRun
	release chan struct{}
	after   chan string // what AfterAnswer work saw
}

func (h *hookRecorder) Hook(ctx context.Context, run HookRun) (HookResult, error) {
	h.mu.Lock()
	h.runs = append(h.runs, HookRun{Stage: run.Stage, State: append([]byte(nil), run.State...)})
	h.mu.Unlock()
	if h.release != nil {
		AfterAnswer(ctx, func() {
			<-h.release
			h.after <- run.Stage
		})
	}
	return HookResult{Registered: &Container{ID: "c"}}, nil
}

func (h *hookRecorder) seen() []HookRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]HookRun(nil), h.runs...)
}

// TestHookRequestEveryWay: a hook line is the same request however it
// arrives: alone (read whole and taken without the decoder), split over
// writes, followed by another request in the same write, or as the
// second request of a connection.
func TestHookRequestEveryWay(t *testing.T) {
	h := &hookRecorder{}
	sock := serve(t, &Server{Handler: h, AllowUID: allowAll})
	state := `{"ociVersion":"1.0.2","id":"c","status":"creating","pid":7,"bundle":"/b","annotations":{"k":"v"}}`
	line, err := oneshot.Line("createRuntime", []byte(state))
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		return conn, bufio.NewReader(conn)
	}
	answer := func(r *bufio.Reader, want string) {
		t.Helper()
		got, err := r.ReadString('\n')
		if err != nil || !strings.Contains(got, want) {
			t.Fatalf("answer %q, %v; want one with %s", got, err, want)
		}
	}

	// Alone, then again on the same connection.
	conn, r := dial()
	conn.Write(line)
	answer(r, `"container":{"id":"c"`)
	conn.Write(line)
	answer(r, `"container":{"id":"c"`)

	// Split over two writes.
	conn, r = dial()
	conn.Write(line[:len(line)/2])
	time.Sleep(50 * time.Millisecond)
	conn.Write(line[len(line)/2:])
	answer(r, `"container":{"id":"c"`)

	// Followed by another request in the same write.
	conn, r = dial()
	conn.Write(append(append([]byte(nil), line...), `{"op":"status"}`+"\n"...))
	answer(r, `"container":{"id":"c"`)
	answer(r, `"abi":"v1"`)

	runs := h.seen()
	if len(runs) != 4 {
		t.Fatalf("handler saw %d hook runs, want 4", len(runs))
	}
	for i, run := range runs {
		if run.Stage != "createRuntime" || string(run.State) != state {
			t.Errorf("run %d: stage %q state %s", i, run.Stage, run.State)
		}
	}
}

// TestAfterAnswerWaitsForTheAnswer: work a handler leaves with
// AfterAnswer runs once the answer is written, not before; outside a
// server it runs at once.
func TestAfterAnswerWaitsForTheAnswer(t *testing.T) {
	h := &hookRecorder{release: make(chan struct{}), after: make(chan string, 1)}
	sock := serve(t, &Server{Handler: h, AllowUID: allowAll})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The answer arrives while the work still waits for release.
	if _, err := (OneShot{Socket: sock}).Hook(ctx, HookRun{Stage: "createRuntime", State: []byte(`{"id":"c"}`)}); err != nil {
		t.Fatalf("hook answered %v while its after-answer work waited", err)
	}
	select {
	case stage := <-h.after:
		t.Fatalf("after-answer work for %s ran before it was released", stage)
	default:
	}
	close(h.release)
	select {
	case <-h.after:
	case <-ctx.Done():
		t.Fatal("after-answer work never ran")
	}

	ran := false
	AfterAnswer(context.Background(), func() { ran = true })
	if !ran {
		t.Error("AfterAnswer outside a server's request did not run its work at once")
	}
}

func TestReadHookLine(t *testing.T) {
	line, err := oneshot.Line("poststop", []byte(`{"id":"c"}`))
	if err != nil {
		t.Fatal(err)
	}
	req, buf, _ := readHookLine(strings.NewReader(string(line)))
	if req == nil || req.Op != OpHook || req.Hook.Stage != "poststop" || string(req.Hook.State) != `{"id":"c"}` || buf == nil {
		t.Fatalf("readHookLine(a hook line) = %+v, buffer %p", req, buf)
	}
	for _, in := range []string{string(line[:10]), `{"op":"status"}` + "\n", string(line) + string(line)} {
		req, _, head := readHookLine(strings.NewReader(in))
		if req != nil || string(head) != in {
			t.Errorf("readHookLine(%q) = %+v, %q; want the bytes back for the decoder", in, req, head)
		}
	}
}

// steppingHook ends one step of its own, of at least 2 ms.
type steppingHook struct{ fakeHandler }

func (*steppingHook) Hook(ctx context.Context, run HookRun) (HookResult, error) {
	time.Sleep(2 * time.Millisecond)
	EndStep(ctx, "work")
	return HookResult{Registered: &Container{ID: "c"}}, nil
}

// TestHookAnswerCarriesSteps: an OpHook answer times the request's steps
// in order, the server's reading of it and each the handler ended; other
// answers carry none.
func TestHookAnswerCarriesSteps(t *testing.T) {
	sock := serve(t, &Server{Handler: &steppingHook{}, AllowUID: allowAll})
	line, err := oneshot.Line("createRuntime", []byte(`{"ociVersion":"1.0.2","id":"c","status":"creating","pid":7,"bundle":"/b"}`))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := oneshot.Call(context.Background(), sock, time.Now().Add(10*time.Second), line)
	if err != nil {
		t.Fatal(err)
	}
	r, err := oneshot.DecodeReply(answer)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 2 || r.Steps[0].Name != "request" || r.Steps[1].Name != "work" || r.Steps[1].Us < 2000 {
		t.Fatalf("answer %s: steps %+v, want request then work of at least 2000 µs", answer, r.Steps)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(`{"op":"list"}` + "\n"))
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || strings.Contains(got, "stepsUs") {
		t.Fatalf("list answer %q (%v) carries steps", got, err)
	}
}
