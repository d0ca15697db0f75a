package linux

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestLockFileWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "engine.lock")
	held, err := LockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := LockFileWait(ctx, path, "waiter"); !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LockFileWait on a held lock = %v, want ErrLocked at the deadline", err)
	}
	time.AfterFunc(50*time.Millisecond, func() { held.Close() })
	f, err := LockFileWait(context.Background(), path, "waiter")
	if err != nil {
		t.Fatalf("LockFileWait after the holder let go: %v", err)
	}
	defer f.Close()
	if got, want := LockHolder(path), strconv.Itoa(os.Getpid())+" waiter"; got != want {
		t.Errorf("LockHolder = %q, want %q", got, want)
	}
}
