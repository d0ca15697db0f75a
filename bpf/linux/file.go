package linux

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// ErrTooLarge matches (errors.Is) the error of a bounded read that met more
// bytes than its limit.
var ErrTooLarge = errors.New("larger than the limit")

type tooLargeError struct {
	name  string
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes", e.name, e.limit)
}

func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }

// ReadLimited reads all of r, refusing more than limit bytes; name names the
// source in errors.
func ReadLimited(r io.Reader, limit int64, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, &tooLargeError{name: name, limit: limit}
	}
	return data, nil
}

// OpenRegular opens path for reading and refuses anything but a regular
// file, naming what it is. The open does not block: a FIFO would otherwise
// wait for a writer that may never come, past every deadline.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fileType(st.Mode()))
	}
	return f, nil
}

// fileType names a file mode's type for errors.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return m.Type().String()
}

// ReadFileLimited reads the file at path, refusing more than limit bytes.
// Like ReadRegularFile it reads through a bare descriptor, for small files
// read on every registration (/proc/PID/cgroup, fdinfo).
func ReadFileLimited(path string, limit int64) ([]byte, error) {
	fd, err := openFd(path, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readFd(fd, 0, limit, path, nil)
}

// ReadProcRecord reads a /proc file the kernel renders whole as one
// record (single_open: /proc/<pid>/cgroup), as ReadFileLimited does, but
// takes a read that did not fill its buffer as the end: such a file hands
// out all it has at once, and the read that would return 0 is one more
// system call on a path every container start waits for.
func ReadProcRecord(path string, limit int64) ([]byte, error) {
	fd, err := openFd(path, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readFd(fd, 0, limit, path, func(int64) bool { return true })
}

// ReadRegularFile reads the regular file at path whole, as OpenRegular and
// ReadLimited would (a FIFO or anything but a regular file refused without
// blocking, more than limit bytes refused; name names the file in errors),
// through a bare descriptor sized by fstat: an *os.File costs five more
// system calls on Linux (its failed registration with the poller), and a
// growing read buffer several reads, on a path every container start waits
// for.
func ReadRegularFile(path string, limit int64, name string) ([]byte, error) {
	fd, err := openFd(path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fileType(modeType(st.Mode)))
	}
	if st.Size > limit {
		return nil, &tooLargeError{name: name, limit: limit}
	}
	// A short read once fstat's size is in is the end of a regular file.
	return readFd(fd, st.Size, limit, name, func(have int64) bool { return have >= st.Size })
}

// ReadFileHead reads what one read(2) gives of the file at path into buf:
// for a /proc file whose first lines are all the caller needs, one system
// call fewer than reading to the end.
func ReadFileHead(path string, buf []byte) (int, error) {
	fd, err := openFd(path, unix.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		return n, nil
	}
}

// openFd opens path close-on-exec, retrying on EINTR as os.Open does.
func openFd(path string, flags int, perm uint32) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, perm)
		if err == nil {
			return fd, nil
		}
		if err != unix.EINTR {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// readFd reads fd to its end, refusing more than limit bytes. size is what
// fstat reported (0 for /proc files, which report none): one read then
// takes the whole file, and a second sees its end, unless shortIsEnd, given
// what was read so far, takes a read that did not fill the buffer as the
// end.
func readFd(fd int, size, limit int64, name string, shortIsEnd func(have int64) bool) ([]byte, error) {
	buf := make([]byte, 0, min(max(size+1, 512), limit+1))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, &tooLargeError{name: name, limit: limit}
			}
			buf = slices.Grow(buf, int(min(int64(cap(buf)), limit+1-int64(len(buf)))))
		}
		// Never past limit+1 bytes in all, whatever capacity Grow gave.
		end := int(min(int64(cap(buf)), limit+1))
		want := end - len(buf)
		n, err := unix.Read(fd, buf[len(buf):end])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, &tooLargeError{name: name, limit: limit}
		}
		if n < want && shortIsEnd != nil && shortIsEnd(int64(len(buf))) {
			return buf, nil
		}
	}
}

// modeType is the fs.FileMode type bits of a stat mode.
func modeType(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	case unix.S_IFLNK:
		return fs.ModeSymlink
	}
	return 0
}

// OpenBlocking opens path with flags (O_CLOEXEC added) for blocking I/O,
// outside Go's poller: os.OpenFile registers every file with it, which
// costs a short-lived process (the OCI hook) an epoll instance and an
// eventfd for files that are never waited on. The error is os.OpenFile's.
func OpenBlocking(path string, flags int, perm uint32) (*os.File, error) {
	fd, err := openFd(path, flags, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// WriteFileAtomic replaces path with data so that a reader, a restarted
// engine or a rebooted node sees the old content or the new, never a mix:
// a temp file beside path is written, synced and renamed over it, then the
// directory is synced. The file gets exactly perm, whatever the umask. The
// temp file is never executable, because a directory scanner (containerd's
// NRI plugin dir) refuses an executable with a name it cannot parse; an
// executable perm is applied after the rename.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: create directory: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(perm &^ 0o111); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	renamed = true
	if perm&0o111 != 0 {
		if err := os.Chmod(path, perm); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Dup is a second handle on f's open file (close-on-exec).
func Dup(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "dup", Path: f.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
