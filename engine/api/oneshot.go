package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// OneShot hands the engine one hook run on a connection of its own, made
// with blocking system calls under socket timeouts. A process that lives
// for one call (the OCI hook, started on every container create) pays for
// Go's network poller (an epoll instance, an eventfd, goroutine hand-offs
// between threads) more than for the call; this needs one thread and no
// poller. Long-lived registrars use Client.
type OneShot struct {
	Socket string
}

// Hook is Client.Hook on a one-shot connection: ctx's deadline (else
// DefaultTimeout) bounds the connect, the send and the answer.
func (o OneShot) Hook(ctx context.Context, run HookRun) (*Registered, error) {
	line, err := hookLine(run)
	if err != nil {
		return nil, fmt.Errorf("hook run at %s: %w", run.Stage, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	reply, err := o.exchange(ctx, deadline, line)
	if err != nil {
		return nil, fmt.Errorf("hook run at %s: %w", run.Stage, err)
	}
	r, err := decodeHookReply(reply)
	if err != nil {
		return nil, fmt.Errorf("hook run at %s: read %s response from %s: %w", run.Stage, OpHook, o.Socket, err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("hook run at %s: %w", run.Stage, refusal(OpHook, r.Error, r.Code, r.NotFound))
	}
	return r.Container, nil
}

// exchange connects, sends line and returns the answer's line.
func (o OneShot) exchange(ctx context.Context, deadline time.Time, line []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", o.Socket, err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("connect to engine at %s: socket: %w", o.Socket, err)
	}
	defer unix.Close(fd)
	// A full listen backlog makes connect wait, bounded by the send timeout.
	if err := setTimeouts(fd, deadline); err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", o.Socket, err)
	}
	if err := retryEINTR(fd, deadline, func() error {
		err := unix.Connect(fd, &unix.SockaddrUnix{Name: o.Socket})
		if errors.Is(err, unix.EISCONN) {
			return nil // a connect a signal interrupted went through
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", o.Socket, err)
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
			if reply, rerr := o.readLine(fd, deadline); rerr == nil {
				return reply, nil
			}
			return nil, fmt.Errorf("send %s request to %s: %w", OpHook, o.Socket, err)
		}
		sent += n
	}
	reply, err := o.readLine(fd, deadline)
	if err != nil {
		return nil, fmt.Errorf("read %s response from %s: %w", OpHook, o.Socket, err)
	}
	return reply, nil
}

// readLine reads the answer's line, at most MaxMessageSize bytes.
func (o OneShot) readLine(fd int, deadline time.Time) ([]byte, error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		// Renewed per read: an engine answering byte by byte still ends
		// at the deadline.
		var n int
		err := setTimeouts(fd, deadline)
		if err == nil {
			err = retryEINTR(fd, deadline, func() (err error) {
				n, err = unix.Read(fd, buf[len(buf):cap(buf)])
				return err
			})
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("connection closed after %d bytes: %w", len(buf), errClosedEarly)
		}
		buf = buf[:len(buf)+n]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i], nil
		}
		if len(buf) > MaxMessageSize {
			return nil, fmt.Errorf("answer larger than %d bytes", MaxMessageSize)
		}
	}
}

// errClosedEarly: the engine closed the connection before a whole answer.
var errClosedEarly = errors.New("unexpected EOF")

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

// hookReply is the part of a Response an OpHook answer fills in.
type hookReply struct {
	Error     string      `json:"error,omitempty"`
	Code      string      `json:"code,omitempty"`
	NotFound  bool        `json:"notFound,omitempty"`
	Container *Registered `json:"container,omitempty"`
}

// Registered is what an OpHook answer says of the container registered:
// what a registrar logs. It reads only these fields of the Container the
// engine sends, so a process that lives for one call decodes little.
type Registered struct {
	ID         string   `json:"id"`
	CgroupID   uint64   `json:"cgroupId,omitempty"`
	CgroupPath string   `json:"cgroupPath,omitempty"`
	Namespace  string   `json:"namespace,omitempty"`
	Pod        string   `json:"pod,omitempty"`
	Name       string   `json:"container,omitempty"`
	Policies   []string `json:"policies,omitempty"`
}

// hookLine is the OpHook request line, written out rather than encoded:
// the hook is a new process per container start, and building
// encoding/json's encoders for the request types costs it more than the
// rest of its work. The state goes as it came, once checked to be JSON.
func hookLine(run HookRun) ([]byte, error) {
	for _, r := range run.Stage {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return nil, fmt.Errorf("stage %q is not a stage name", run.Stage)
		}
	}
	if !json.Valid(run.State) {
		return nil, errors.New("OCI state is not valid JSON")
	}
	line := make([]byte, 0, len(run.State)+64)
	line = append(line, `{"op":"hook","hook":{"stage":"`...)
	line = append(line, run.Stage...)
	line = append(line, `","state":`...)
	line = append(line, run.State...)
	return append(line, "}}\n"...), nil
}
