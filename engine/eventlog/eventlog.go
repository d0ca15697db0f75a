// Package eventlog is the engine's events file: JSON lines appended to a
// file that is rotated by size, keeping a bounded number of backups, so a
// flood of events cannot fill the disk.
//
// The engine (engine/daemon) and the holdfast command import it.
package eventlog

import (
	"fmt"
	"os"
	"sync"
)

// File appends to Path and rotates it to Path.1 (Path.1 to Path.2, ...)
// before a write would take it past MaxBytes; Path.<Backups> is the oldest
// kept. With Backups 0 the file is started afresh. Each Write lands whole
// in one file, so lines are never split across a rotation.
type File struct {
	Path     string
	MaxBytes int64 // 0: never rotate
	Backups  int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (creating) the events file for appending.
func Open(path string, maxBytes int64, backups int) (*File, error) {
	if maxBytes < 0 || backups < 0 {
		return nil, fmt.Errorf("events file %s: negative size limit or backup count", path)
	}
	l := &File{Path: path, MaxBytes: maxBytes, Backups: backups}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open events file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open events file: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first if p would not fit.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, fmt.Errorf("write events file %s: %w", l.Path, os.ErrClosed)
	}
	if l.MaxBytes > 0 && l.size > 0 && l.size+int64(len(p)) > l.MaxBytes {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("write events file %s: %w", l.Path, err)
	}
	return n, nil
}

func (l *File) backup(i int) string { return fmt.Sprintf("%s.%d", l.Path, i) }

// rotate shifts the backups up by one, dropping the oldest.
func (l *File) rotate() error {
	l.f.Close()
	l.f = nil
	if l.Backups == 0 {
		if err := os.Remove(l.Path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotate events file %s: %w", l.Path, err)
		}
	} else {
		os.Remove(l.backup(l.Backups))
		for i := l.Backups - 1; i >= 1; i-- {
			if err := os.Rename(l.backup(i), l.backup(i+1)); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("rotate events file %s: %w", l.Path, err)
			}
		}
		if err := os.Rename(l.Path, l.backup(1)); err != nil {
			return fmt.Errorf("rotate events file %s: %w", l.Path, err)
		}
	}
	return l.open()
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("close events file %s: %w", l.Path, err)
	}
	return nil
}
