package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEventFilterMatch(t *testing.T) {
	m := EventMeta{Namespace: "shop", Pod: "web-0", ContainerID: "c1", ContainerName: "main", Policy: "lock", Type: "exec-killed", Verdict: VerdictDeny}
	for _, tc := range []struct {
		f    EventFilter
		want bool
	}{
		{EventFilter{}, true},
		{EventFilter{Namespace: "shop", Pod: "web-0", Policy: "lock"}, true},
		{EventFilter{Namespace: "bank"}, false},
		{EventFilter{Container: "main"}, true},
		{EventFilter{Container: "c1"}, true},
		{EventFilter{Container: "other"}, false},
		{EventFilter{Types: []string{"connect-refused", "exec-killed"}}, true},
		{EventFilter{Types: []string{"connect-refused"}}, false},
		{EventFilter{Verdicts: []string{VerdictWouldDeny}}, false},
		{EventFilter{Namespace: "shop", Verdicts: []string{VerdictDeny, VerdictAllow}}, true},
	} {
		if got := tc.f.Match(m); got != tc.want {
			t.Errorf("%+v.Match = %v, want %v", tc.f, got, tc.want)
		}
	}
}

// chanSource streams what the test sends on lines.
type chanSource struct {
	fakeHandler
	lines chan []byte
	err   error
}

type chanSub struct{ lines chan []byte }

func (s chanSub) Lines() <-chan []byte { return s.lines }
func (s chanSub) TakeLost() uint64     { return 0 }
func (s chanSub) Close()               {}

func (c *chanSource) SubscribeEvents(EventFilter) (EventSubscription, error) {
	if c.err != nil {
		return nil, c.err
	}
	return chanSub{c.lines}, nil
}

func TestSubscribe(t *testing.T) {
	src := &chanSource{lines: make(chan []byte, 1)}
	ts := startServer(t, &Server{Handler: src, AllowUID: allowAll})
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := newClient(t, ts.sock).SubscribeEvents(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	src.lines <- []byte(`{"seq":1}` + "\n")
	if l, err := stream.Next(); err != nil || string(l) != `{"seq":1}` {
		t.Errorf("Next = %q, %v", l, err)
	}
	// The engine ending the stream is an error; the client's cancel is not.
	close(src.lines)
	if _, err := stream.Next(); !errors.Is(err, ErrStreamEnded) {
		t.Errorf("after the engine closed the stream: %v, want ErrStreamEnded", err)
	}
	cancel()

	refusing := startServer(t, &Server{Handler: &chanSource{err: errors.New("too many event subscribers")}, AllowUID: allowAll})
	if _, err := newClient(t, refusing.sock).SubscribeEvents(context.Background(), EventFilter{}); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("refused subscription: %v", err)
	}
	plain := startServer(t, &Server{Handler: &fakeHandler{}, AllowUID: allowAll})
	if _, err := newClient(t, plain.sock).SubscribeEvents(context.Background(), EventFilter{}); err == nil || !strings.Contains(err.Error(), "cannot stream events") {
		t.Errorf("handler without events: %v", err)
	}
}

// A server shutdown ends a stream without waiting for a line.
func TestSubscribeEndsOnShutdown(t *testing.T) {
	ts := startServer(t, &Server{Handler: &chanSource{lines: make(chan []byte)}, AllowUID: allowAll})
	stream, err := newClient(t, ts.sock).SubscribeEvents(context.Background(), EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := stream.Next(); done <- err }()
	ts.stop()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStreamEnded) {
			t.Errorf("after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open 10s after the server stopped")
	}
}
