// Package oneshot is an OCI hook's call to the engine: one OpHook request
// on a connection of its own, made with blocking system calls under socket
// timeouts, and the answer read without reflection. A process that lives
// for one call (holdfast-oci-hook, started on every container create) pays
// for Go's network poller (an epoll instance, an eventfd, goroutine
// hand-offs between threads) and for encoding/json's reflection caches
// more than for the call; this needs one thread, no poller and no
// reflection. The answer is awaited in a raw ppoll that keeps the caller's
// P (linux.WaitReady), bounded by the call's deadline: the callers (the
// hook's fast path, the full hook's forward) have nothing else to run
// meanwhile, and the runtime then starts no thread to take the P over.
//
// It imports of this module only jsonscan and bpf/linux, and neither
// package net nor encoding/json, so the hook's fast path links little.
// Package api wraps it (api.OneShot) with the protocol's refusal errors.
package oneshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
)

// DefaultSocket is where the engine listens on a node (api.DefaultSocket).
const DefaultSocket = "/run/holdfast/engine.sock"

// MaxMessageSize bounds one request or response line (api.MaxMessageSize).
const MaxMessageSize = 4 << 20

// MaxStateSize bounds the OCI state a runtime writes to a hook's stdin
// (ocihook.MaxStateSize): CRI-O and containerd put every annotation in it,
// so it can be tens of KiB, never megabytes.
const MaxStateSize = 4 << 20

// Op is the request's op (api.OpHook).
const Op = "hook"

// Codes of answers (api.CodeNotFound, api.CodeCannotEnforce): the engine
// does not know the container; it cannot enforce the container's policies.
const (
	CodeNotFound      = "not-found"
	CodeCannotEnforce = "cannot-enforce"
)

// Line is the OpHook request line, written out rather than encoded. The
// state goes as it came, once checked to be one JSON document.
func Line(stage string, state []byte) ([]byte, error) {
	for _, r := range stage {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return nil, fmt.Errorf("stage %q is not a stage name", stage)
		}
	}
	if !Valid(state) {
		return nil, errors.New("OCI state is not valid JSON")
	}
	line := make([]byte, 0, len(state)+64)
	line = append(line, `{"op":"`+Op+`","hook":{"stage":"`...)
	line = append(line, stage...)
	line = append(line, `","state":`...)
	line = append(line, state...)
	return append(line, "}}\n"...), nil
}

// ParseLine is Line's inverse, for the engine: the stage and state of a
// request line exactly as Line writes it, newline included. Any other
// line, however valid, is not ok: the engine decodes that one in full.
func ParseLine(line []byte) (stage string, state []byte, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"op":"`+Op+`","hook":{"stage":"`))
	if !ok {
		return "", nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return "", nil, false
	}
	for _, c := range rest[:end] {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return "", nil, false
		}
	}
	stage = string(rest[:end])
	if rest, ok = bytes.CutPrefix(rest[end:], []byte(`","state":`)); !ok {
		return "", nil, false
	}
	if state, ok = bytes.CutSuffix(rest, []byte("}}\n")); !ok {
		return "", nil, false
	}
	// As Line writes it: one document, nothing around it, and nested no
	// deeper than the decoder takes it inside its request (the bound counts
	// the request's own levels: TestParseLineNestingBound).
	if len(state) == 0 || isSpace(state[0]) || isSpace(state[len(state)-1]) {
		return "", nil, false
	}
	if s := jsonscan.New(state); s.SkipNested(3) != nil || s.End() != nil {
		return "", nil, false
	}
	return stage, state, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Valid reports whether data is one JSON document, as json.Valid does.
func Valid(data []byte) bool {
	s := jsonscan.New(data)
	return s.Skip() == nil && s.End() == nil
}

// Call connects to the engine at socket, sends line and returns the
// answer's line (without its newline). Each blocking call ends by deadline.
func Call(ctx context.Context, socket string, deadline time.Time, line []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", socket, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("connect to engine at %s: socket: %w", socket, err)
	}
	defer unix.Close(fd)
	// A full listen backlog makes connect wait, bounded by the send timeout.
	if err := setTimeouts(fd, deadline); err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", socket, err)
	}
	if err := retryEINTR(fd, deadline, func() error {
		err := unix.Connect(fd, &unix.SockaddrUnix{Name: socket})
		if errors.Is(err, unix.EISCONN) {
			return nil // a connect a signal interrupted went through
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", socket, err)
	}
	for sent := 0; sent < len(line); {
		var n int
		err := retryEINTR(fd, deadline, func() (err error) {
			n, err = unix.Write(fd, line[sent:])
			return err
		})
		if err != nil {
			// The engine may have said why (an oversized request) before
			// it closed.
			if reply, rerr := readLine(fd, deadline); rerr == nil {
				return reply, nil
			}
			return nil, fmt.Errorf("send %s request to %s: %w", Op, socket, err)
		}
		sent += n
	}
	reply, err := readLine(fd, deadline)
	if err != nil {
		return nil, fmt.Errorf("read %s response from %s: %w", Op, socket, err)
	}
	return reply, nil
}

// readLine reads the answer's line, at most MaxMessageSize bytes.
func readLine(fd int, deadline time.Time) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		// Wait in poll(2), not in read: the engine taking the request off
		// the socket wakes every reader of this one to say it has room to
		// write again, and poll alone sleeps through that (it waits for
		// input only). The wait ends at the deadline, however the engine
		// answers (byte by byte included).
		if err := awaitInput(fd, deadline); err != nil {
			return nil, err
		}
		var n int
		err := retryEINTR(fd, deadline, func() (err error) {
			n, err = unix.Read(fd, buf[len(buf):cap(buf)])
			return err
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("connection closed after %d bytes: %w", len(buf), ErrClosedEarly)
		}
		// Only the new bytes can hold the newline.
		if i := bytes.IndexByte(buf[len(buf):len(buf)+n], '\n'); i >= 0 && len(buf)+i <= MaxMessageSize {
			return buf[:len(buf)+i], nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > MaxMessageSize {
			return nil, fmt.Errorf("answer larger than %d bytes", MaxMessageSize)
		}
	}
}

// awaitInput waits until fd has input (or the peer closed) or the deadline
// passes, holding the P of a process with one goroutine (linux.WaitReady).
func awaitInput(fd int, deadline time.Time) error {
	err := linux.WaitReady(fd, unix.POLLIN, deadline)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return deadlinePassed()
	}
	return err
}

// ErrClosedEarly: the engine closed the connection before a whole answer.
var ErrClosedEarly = errors.New("unexpected EOF")

// retryEINTR runs op, again after a signal interrupted it (a socket call
// with a timeout is not restarted) with the timeouts renewed. A timeout
// reads as the deadline passing.
func retryEINTR(fd int, deadline time.Time, op func() error) error {
	for {
		err := op()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EAGAIN):
			return deadlinePassed()
		case !errors.Is(err, unix.EINTR):
			return err
		}
		if err := setTimeouts(fd, deadline); err != nil {
			return err
		}
	}
}

// setTimeouts bounds each blocking call on fd by what is left of deadline.
// A zero timeout would mean none: a passed deadline is an error.
func setTimeouts(fd int, deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return deadlinePassed()
	}
	tv := unix.NsecToTimeval(max(left, time.Microsecond).Nanoseconds())
	for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return fmt.Errorf("set socket timeout: %w", err)
		}
	}
	return nil
}

// deadlinePassed is the error of a call the deadline cut short, as the
// client's: it matches context.DeadlineExceeded and os.ErrDeadlineExceeded.
func deadlinePassed() error {
	return fmt.Errorf("%w (%w)", context.DeadlineExceeded, os.ErrDeadlineExceeded)
}
