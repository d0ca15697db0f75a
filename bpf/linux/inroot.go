package linux

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// OpenInRoot opens path with openat2(RESOLVE_IN_ROOT) below the directory
// root: ".." and absolute symlinks stop at root, as they do for a process
// chrooted there, and magic links (/proc/self/...) are refused. The file is
// an O_PATH handle (nothing is read or executed) unless dir asks for a
// readable directory. With follow false, a trailing symlink is opened itself.
func OpenInRoot(root *os.File, path string, follow, dir bool) (*os.File, error) {
	flags := uint64(unix.O_CLOEXEC)
	if dir {
		flags |= unix.O_RDONLY | unix.O_DIRECTORY
	} else {
		flags |= unix.O_PATH
	}
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	how := unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(int(root.Fd()), path, &how)
	if err != nil {
		return nil, &os.PathError{Op: "openat2 in " + root.Name(), Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// FileStat is what fstat says about a handle.
type FileStat struct {
	Mode  fs.FileMode // type bits only
	Ino   uint64
	Nlink uint64
}

// Fstat stats an open handle (also an O_PATH one).
func Fstat(f *os.File) (FileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return FileStat{}, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	var mode fs.FileMode
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		mode = fs.ModeDir
	case unix.S_IFLNK:
		mode = fs.ModeSymlink
	case unix.S_IFREG:
	default:
		mode = fs.ModeIrregular
	}
	return FileStat{Mode: mode, Ino: st.Ino, Nlink: uint64(st.Nlink)}, nil
}

// ReadlinkFd reads the target of a symlink opened with OpenInRoot(follow false).
func ReadlinkFd(f *os.File) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(f.Fd()), "", buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: f.Name(), Err: err}
	}
	return string(buf[:n]), nil
}
