package cgroup

import (
	"errors"
	"fmt"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// FS reads the IDs of many directories of one cgroup v2 file system, as ID
// does, at one stat each instead of a statfs and a stat: the file system
// type is checked once, on its root, and a directory must be on the
// root's device. A restart checks the cgroup of every registration.
type FS struct {
	root string
	dev  uint64
}

// OpenFS checks that root is a cgroup v2 directory.
func OpenFS(root string) (FS, error) {
	if _, err := ID(root); err != nil {
		return FS{}, err
	}
	dev, _, err := linux.DirDevInode(root)
	if err != nil {
		return FS{}, fmt.Errorf("cgroup file system of %s: %w", root, err)
	}
	return FS{root: root, dev: dev}, nil
}

// ErrOtherDevice: a directory is not on the device the cgroup file system
// had when FS was opened (another file system, or the cgroup file system
// mounted again since).
var ErrOtherDevice = errors.New("not on the cgroup v2 file system")

// ID is the cgroup ID of dir, which must be on the file system of root.
func (fs FS) ID(dir string) (uint64, error) {
	dev, ino, err := linux.DirDevInode(dir)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	if dev != fs.dev {
		return 0, fmt.Errorf("cgroup id of %s: %w of %s", dir, ErrOtherDevice, fs.root)
	}
	return ino, nil
}
