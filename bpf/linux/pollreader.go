package linux

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// PollReader reads a file descriptor in blocking reads, each once poll(2)
// says it is ready before the deadline (os.ErrDeadlineExceeded after it):
// the wait needs neither Go's poller nor a goroutine, which a process
// living for one call (the OCI hook reading its stdin) pays more for than
// for the read.
type PollReader struct {
	Fd       int
	Deadline time.Time
}

func (r PollReader) Read(p []byte) (int, error) {
	for {
		left := time.Until(r.Deadline)
		if left <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		ready, err := unix.Poll([]unix.PollFd{{Fd: int32(r.Fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) || err == nil && ready == 0 {
			continue // the loop checks the deadline
		}
		if err != nil {
			return 0, err
		}
		n, err := unix.Read(r.Fd, p)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
