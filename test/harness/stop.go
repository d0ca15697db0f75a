package harness

import (
	"os"
	"syscall"
	"time"
)

// StopProcess ends a process a test started: SIGTERM, then SIGKILL if done
// (closed once the process was waited for) has not closed within grace.
func StopProcess(p *os.Process, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		p.Kill()
		<-done
	}
}
