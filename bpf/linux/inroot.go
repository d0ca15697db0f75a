package linux

import (
	"errors"
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
	Mode  fs.FileMode // type bits only: 0 for a regular file
	Ino   uint64
	Nlink uint64
}

// Fstat stats an open handle (also an O_PATH one).
func Fstat(f *os.File) (FileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return FileStat{}, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return FileStat{Mode: modeType(st.Mode), Ino: st.Ino, Nlink: uint64(st.Nlink)}, nil
}

// FileIdentity is what statx says about a handle: its type, link count,
// inode number and the ID of the mount it is on.
type FileIdentity struct {
	FileStat
	MntID int // the mount ID mountinfo and fdinfo name
}

// ErrNoStatxMountID: the kernel's statx cannot name a file's mount (Linux
// before 5.8).
var ErrNoStatxMountID = errors.New("statx reports no mount ID")

// Identify stats an open handle (also an O_PATH one) with one statx call.
// The inode number is the inode's own i_ino, the one fdinfo shows: a file
// system that reports another number to stat (overlayfs) sets i_ino to
// the number it reports, so that the two agree.
func Identify(f *os.File) (FileIdentity, error) {
	var stx unix.Statx_t
	err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT,
		unix.STATX_TYPE|unix.STATX_NLINK|unix.STATX_INO|unix.STATX_MNT_ID, &stx)
	if err != nil {
		return FileIdentity{}, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return FileIdentity{}, &os.PathError{Op: "statx", Path: f.Name(), Err: ErrNoStatxMountID}
	}
	st := FileStat{Mode: modeType(uint32(stx.Mode)), Ino: stx.Ino, Nlink: uint64(stx.Nlink)}
	return FileIdentity{FileStat: st, MntID: int(stx.Mnt_id)}, nil
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
