package linux

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWaitReady: the wait ends when the descriptor has input, when its
// writer goes away, and at the deadline, not before it.
func TestWaitReady(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	if err := WaitReady(int(r.Fd()), unix.POLLIN, start.Add(50*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReady on an empty pipe = %v, want the deadline", err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("WaitReady returned after %v, before its 50ms deadline", took)
	}
	w.Write([]byte("x"))
	if err := WaitReady(int(r.Fd()), unix.POLLIN, time.Now().Add(time.Second)); err != nil {
		t.Errorf("WaitReady with input waiting = %v", err)
	}
	buf := make([]byte, 1)
	r.Read(buf)
	w.Close()
	if err := WaitReady(int(r.Fd()), unix.POLLIN, time.Now().Add(time.Second)); err != nil {
		t.Errorf("WaitReady after the writer closed = %v", err)
	}
	if err := WaitReady(int(r.Fd()), unix.POLLIN, time.Now().Add(-time.Second)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("WaitReady past its deadline = %v", err)
	}
}
