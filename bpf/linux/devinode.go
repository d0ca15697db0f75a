package linux

import (
	"os"

	"golang.org/x/sys/unix"
)

// DevInode returns the device and inode number of path in one stat.
func DevInode(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Dev, st.Ino, nil
}
