package linux

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked: another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// LockFile takes an exclusive flock on path (created if needed) without
// waiting, and records this process's pid in it. The lock lasts until the
// file is closed or the process exits, so a crash never leaves it behind.
// If another process holds it, the error wraps ErrLocked and names the
// holder's pid as recorded.
func LockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder, _ := os.ReadFile(path)
			pid := strings.TrimSpace(string(holder))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("lock %s: %w (pid %s)", path, ErrLocked, pid)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is informational; failing to write it (a full disk) does not
	// weaken the lock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
