package linux

import (
	"os"

	"golang.org/x/sys/unix"
)

// DirDevInode returns the device and inode number of the directory path in
// one stat; anything else is refused (ENOTDIR): a cgroup's control files
// sit on its file system too, with inode numbers no task's cgroup has.
func DirDevInode(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, 0, &os.PathError{Op: "stat", Path: path, Err: unix.ENOTDIR}
	}
	return st.Dev, st.Ino, nil
}
