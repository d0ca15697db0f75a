package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hookFake takes hook runs: a stopped container is unregistered (and not
// found), anything else registered as the state's id, or refused.
type hookFake struct {
	fakeHandler
	refuse error
}

func (f *hookFake) Hook(ctx context.Context, run HookRun) (HookResult, error) {
	if f.refuse != nil {
		return HookResult{}, f.refuse
	}
	var st struct{ ID, Status string }
	if err := json.Unmarshal(run.State, &st); err != nil {
		return HookResult{}, err
	}
	if st.Status == "stopped" {
		return HookResult{}, f.Unregister(ctx, st.ID)
	}
	c, err := f.Register(ctx, Container{ID: st.ID, CgroupID: 9, Namespace: "ns", Pod: "p", Name: run.Stage})
	return HookResult{Registered: c}, err
}

func hookState(id, status string) json.RawMessage {
	return json.RawMessage(`{"ociVersion":"1.0.2","id":"` + id + `","status":"` + status + `","pid":1,"bundle":"/b"}`)
}

func withDeadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestOneShotHook: the one-shot connection carries a hook run and its
// answer as Client calls do, with the same errors for each refusal.
func TestOneShotHook(t *testing.T) {
	sock := serve(t, &Server{Handler: &hookFake{}, AllowUID: allowAll})
	answer, err := OneShot{Socket: sock}.Hook(withDeadline(t, 5*time.Second), HookRun{Stage: "createRuntime", State: hookState("c1", "creating")})
	if err != nil {
		t.Fatal(err)
	}
	// The answer times at least the server's reading of the request.
	if len(answer.Steps) == 0 || answer.Steps[0].Name != "request" {
		t.Errorf("answer steps %+v, want the request's first", answer.Steps)
	}
	reg := answer.Registered
	if reg == nil || reg.ID != "c1" || reg.CgroupID != 9 || reg.Namespace != "ns" || reg.Pod != "p" || reg.Name != "createRuntime" || len(reg.Policies) != 1 || reg.Policies[0] != "p" {
		t.Fatalf("registered %+v", reg)
	}

	_, err = OneShot{Socket: sock}.Hook(withDeadline(t, 5*time.Second), HookRun{Stage: "createRuntime", State: hookState("c1", "stopped")})
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrRefused) {
		t.Fatalf("stopped container the engine did not know: want ErrNotFound, got %v", err)
	}

	for name, tt := range map[string]struct {
		handler Handler
		want    error
	}{
		"engine older than the hook request": {&fakeHandler{}, ErrUnsupported},
		"cannot enforce":                     {&hookFake{refuse: ErrCannotEnforce}, ErrCannotEnforce},
	} {
		t.Run(name, func(t *testing.T) {
			sock := serve(t, &Server{Handler: tt.handler, AllowUID: allowAll})
			answer, err := OneShot{Socket: sock}.Hook(withDeadline(t, 5*time.Second), HookRun{Stage: "createRuntime", State: hookState("c2", "creating")})
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrRefused) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
			// A refusal still says where in the engine it came.
			if len(answer.Steps) == 0 || answer.Steps[0].Name != "request" {
				t.Errorf("refusal's steps %+v, want the request's first", answer.Steps)
			}
		})
	}
}

// TestOneShotUnreachable: no engine, an engine that never answers and one
// that breaks off its answer each fail within the deadline, naming the
// socket, and none reads as the engine's refusal.
func TestOneShotUnreachable(t *testing.T) {
	run := HookRun{Stage: "createRuntime", State: hookState("c3", "creating")}

	absent := filepath.Join(t.TempDir(), "absent.sock")
	_, err := OneShot{Socket: absent}.Hook(withDeadline(t, 5*time.Second), run)
	if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "connect to engine at "+absent) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no engine: want a connect error naming the socket, got %v", err)
	}

	h := &hookFake{fakeHandler: fakeHandler{block: make(chan struct{})}}
	defer close(h.block)
	silent := serve(t, &Server{Handler: h, AllowUID: allowAll, Timeout: time.Minute})
	start := time.Now()
	_, err = OneShot{Socket: silent}.Hook(withDeadline(t, 200*time.Millisecond), run)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), silent) {
		t.Fatalf("engine that never answers: want a deadline error naming the socket, got %v", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Fatalf("engine that never answers: the call returned after %v, long past its 200ms deadline", waited)
	}

	l, broken := listenTemp(t)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			io.ReadAll(io.LimitReader(conn, 1)) // the request has started
			conn.Write([]byte(`{"container":{"id":`))
			conn.Close()
		}
	}()
	_, err = OneShot{Socket: broken}.Hook(withDeadline(t, 5*time.Second), run)
	if err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "read hook response from "+broken) {
		t.Fatalf("broken-off answer: want a read error naming the socket, got %v", err)
	}
}

// TestOneShotRefusesBadRunBeforeConnecting: a state that is not JSON is
// refused by the client, so the engine never sees it.
func TestOneShotRefusesBadRunBeforeConnecting(t *testing.T) {
	srv := startServer(t, &Server{Handler: &hookFake{}, AllowUID: allowAll})
	_, err := OneShot{Socket: srv.sock}.Hook(withDeadline(t, 5*time.Second), HookRun{Stage: "createRuntime", State: json.RawMessage(`{"id":`)})
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("want the bad state refused, got %v", err)
	}
	if n := srv.l.accepted.Load(); n != 0 {
		t.Fatalf("the engine accepted %d connections for a refused run", n)
	}
}
