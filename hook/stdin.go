package hook

import (
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fdReader reads a file descriptor in blocking reads, each once poll(2)
// says it is ready before the deadline: the wait needs neither Go's poller
// nor a goroutine, which a process living for one call pays more for than
// for the read.
type fdReader struct {
	fd       int
	deadline time.Time
}

func (r fdReader) Read(p []byte) (int, error) {
	for {
		left := time.Until(r.deadline)
		if left <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		ready, err := unix.Poll([]unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) || err == nil && ready == 0 {
			continue // the loop checks the deadline
		}
		if err != nil {
			return 0, err
		}
		n, err := unix.Read(r.fd, p)
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
