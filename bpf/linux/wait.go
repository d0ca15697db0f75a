package linux

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WaitReady waits until fd is ready for events, or its peer hung up, or
// the deadline passes (os.ErrDeadlineExceeded). It waits in a raw system
// call, which keeps the calling goroutine's P: the runtime neither hands
// the P to a new thread once the wait passes 20µs nor takes it back on
// return, thread churn that a process waiting a millisecond on another
// (the OCI hook on the engine) pays on every wait, on the CPU the other
// process needs. Only for a process with nothing else to run meanwhile.
func WaitReady(fd int, events int16, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		fds := [1]unix.PollFd{{Fd: int32(fd), Events: events}}
		ts := unix.NsecToTimespec(int64(left))
		n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		switch {
		case e == unix.EINTR || e == 0 && n == 0:
			continue // the loop checks the deadline
		case e != 0:
			return fmt.Errorf("ppoll: %w", e)
		}
		return nil
	}
}
