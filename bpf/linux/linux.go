package linux

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Cred is a Unix-socket peer's identity as the kernel recorded it at connect.
type Cred struct {
	PID uint32
	UID uint32
	GID uint32
}

// PeerCred returns the SO_PEERCRED credentials of conn's peer (a
// *net.UnixConn; the interface keeps package net out of this one, which
// the OCI hook's one-call process links).
func PeerCred(conn syscall.Conn) (Cred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var ucred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		ucred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("getsockopt SO_PEERCRED: %w", serr)
	}
	return Cred{PID: uint32(ucred.Pid), UID: ucred.Uid, GID: ucred.Gid}, nil
}

// Inode returns the inode number of path. For a cgroup v2 directory this is
// the cgroup ID that bpf_get_current_cgroup_id() returns.
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st.Ino, nil
}

// Filesystem magic numbers this project checks for.
const (
	Cgroup2Magic = unix.CGROUP2_SUPER_MAGIC
	BPFFSMagic   = unix.BPF_FS_MAGIC
)

// FSMagic returns the statfs magic of the filesystem holding path.
func FSMagic(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return int64(st.Type), nil
}

// MountBPFFS mounts a bpf filesystem at dir unless one is there already.
func MountBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create bpffs mount point %s: %w", dir, err)
	}
	if magic, err := FSMagic(dir); err == nil && magic == BPFFSMagic {
		return nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return nil
}

// TracefsDir is where the kernel's tracefs is mounted by convention.
const TracefsDir = "/sys/kernel/tracing"

// MountTracefs mounts tracefs at TracefsDir unless it is there; tracepoint
// programs are attached by the IDs it lists.
func MountTracefs() error {
	if magic, err := FSMagic(TracefsDir); err == nil && magic == unix.TRACEFS_MAGIC {
		return nil
	}
	if err := unix.Mount("nodev", TracefsDir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs at %s: %w", TracefsDir, err)
	}
	return nil
}

// IsNotExist reports whether err means a missing file or process.
func IsNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)
}

// Unmount lazily detaches the mount at dir.
func Unmount(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount", Path: dir, Err: err}
	}
	return nil
}
