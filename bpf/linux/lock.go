package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked: another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// LockFile takes an exclusive flock on path (created if needed) without
// waiting, and records this process's pid in it. The lock lasts until the
// file is closed or the process exits, so a crash never leaves it behind.
// If another process holds it, the error wraps ErrLocked and names the
// holder's pid as recorded.
func LockFile(path string) (*os.File, error) { return lockFile(path, "") }

// lockFile is LockFile recording "pid holder" when holder is set.
func lockFile(path, holder string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			recorded, _ := os.ReadFile(path)
			pid := strings.TrimSpace(string(recorded))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("lock %s: %w (pid %s)", path, ErrLocked, pid)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is informational; failing to write it (a full disk) does not
	// weaken the lock.
	record := strconv.Itoa(os.Getpid())
	if holder != "" {
		record += " " + holder
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(record+"\n"), 0)
	}
	return f, nil
}

// LockFileWait is LockFile retried until ctx ends, for a short-lived writer
// that may wait its turn. holder is written after the pid ("123 holder"),
// so whoever finds the lock taken can tell who has it.
func LockFileWait(ctx context.Context, path, holder string) (*os.File, error) {
	delay := time.Millisecond
	for {
		f, err := lockFile(path, holder)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, ErrLocked) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited until %w)", err, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// LockHolder reads what the holder of the lock at path recorded: its pid
// and, for LockFileWait holders, their name.
func LockHolder(path string) string {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data))
}
