package linux

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysStatmount is statmount(2)'s number, the same on every architecture
// (Linux 6.8+).
const sysStatmount = 457

const statmountSBBasic = 0x1 // STATMOUNT_SB_BASIC

// mntIDReq is struct mnt_id_req with mnt_ns_id (Linux 6.11+).
type mntIDReq struct {
	Size    uint32
	Spare   uint32
	MntID   uint64
	Param   uint64
	MntNsID uint64
}

// statmountBasic is the head of struct statmount up to the superblock's
// fields, which is all STATMOUNT_SB_BASIC fills in; the kernel writes at
// most the size it is given.
type statmountBasic struct {
	Size       uint32
	MntOpts    uint32
	Mask       uint64
	SbDevMajor uint32
	SbDevMinor uint32
	SbMagic    uint64
	SbFlags    uint32
	FsType     uint32
	MntID      uint64
	// The kernel wants room for the whole fixed struct (512 bytes).
	_ [512 - 48]byte
}

// ErrNoStatmount says the kernel cannot report a mount's superblock
// device by mount ID (statmount with a mount namespace, Linux 6.11+);
// callers fall back to reading mountinfo.
var ErrNoStatmount = errors.New("statmount of a mount namespace not supported")

// MountNamespaceID is the ID of the mount namespace of process pid
// (NS_GET_MNTNS_ID, Linux 6.11+), for MountDevice.
func MountNamespaceID(pid int) (uint64, error) {
	// A bare descriptor: an *os.File's poller registration would cost
	// five more system calls, on every registration's path.
	fd, err := openFd("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("mount namespace of pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	var id uint64
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.NS_GET_MNTNS_ID, uintptr(unsafe.Pointer(&id))); e != 0 {
		if e == unix.ENOTTY || e == unix.EINVAL {
			return 0, fmt.Errorf("mount namespace of pid %d: %w", pid, ErrNoStatmount)
		}
		return 0, fmt.Errorf("mount namespace of pid %d: %w", pid, e)
	}
	return id, nil
}

// MountDevice reports the superblock device (major, minor) of the mount
// f is on, as the kernel holds it (the device mountinfo shows, which
// stat(2) does not always report). nsID names the mount namespace the
// mount is in (MountNamespaceID); 0 is this process's.
func MountDevice(f *os.File, nsID uint64) (major, minor uint32, err error) {
	mntID, err := MountIDUnique(f)
	if err != nil {
		return 0, 0, err
	}
	req := mntIDReq{Size: uint32(unsafe.Sizeof(mntIDReq{})), MntID: mntID, Param: statmountSBBasic, MntNsID: nsID}
	var sm statmountBasic
	_, _, e := unix.Syscall6(sysStatmount, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&sm)), unsafe.Sizeof(sm), 0, 0, 0)
	switch {
	case e == unix.ENOSYS || e == unix.E2BIG || (e == unix.EINVAL && nsID != 0):
		return 0, 0, fmt.Errorf("mount of %s: %w", f.Name(), ErrNoStatmount)
	case e != 0:
		return 0, 0, fmt.Errorf("statmount of the mount of %s: %w", f.Name(), e)
	case sm.Mask&statmountSBBasic == 0:
		return 0, 0, fmt.Errorf("mount of %s: %w", f.Name(), ErrNoStatmount)
	}
	return sm.SbDevMajor, sm.SbDevMinor, nil
}

// sysListmount is listmount(2)'s number, the same on every architecture
// (Linux 6.8+).
const sysListmount = 458

const (
	lsmtRoot         = ^uint64(0) // LSMT_ROOT: the namespace's whole tree
	listmountReverse = 0x1        // LISTMOUNT_REVERSE (Linux 6.12+)
)

// NewestMountID is the largest unique mount ID in mount namespace nsID (0:
// this process's). Unique mount IDs come from one counter and are never
// reused, so a mount made later has a larger one: a file whose mount is
// newer than this watermark sits on a mount made since. The error wraps
// ErrNoStatmount where the kernel cannot list mounts by namespace.
func NewestMountID(nsID uint64) (uint64, error) {
	req := mntIDReq{Size: uint32(unsafe.Sizeof(mntIDReq{})), MntID: lsmtRoot, MntNsID: nsID}
	var ids [64]uint64
	n, _, e := unix.Syscall6(sysListmount, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&ids[0])), 1, listmountReverse, 0, 0)
	if e == 0 && n == 1 {
		return ids[0], nil
	}
	if e != unix.EINVAL && e != 0 {
		return 0, listmountErr(nsID, e)
	}
	// No LISTMOUNT_REVERSE: list the whole namespace, in pages.
	var newest uint64
	for {
		n, _, e := unix.Syscall6(sysListmount, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&ids[0])), uintptr(len(ids)), 0, 0, 0)
		if e != 0 {
			return 0, listmountErr(nsID, e)
		}
		for _, id := range ids[:n] {
			newest = max(newest, id)
		}
		if int(n) < len(ids) {
			return newest, nil
		}
		req.Param = ids[n-1]
	}
}

func listmountErr(nsID uint64, e unix.Errno) error {
	if e == unix.ENOSYS || e == unix.EINVAL || e == unix.E2BIG {
		return fmt.Errorf("list mounts of namespace %d: %w", nsID, ErrNoStatmount)
	}
	return fmt.Errorf("list mounts of namespace %d: %w", nsID, e)
}

// MountIDUnique is the unique ID of the mount f is on.
func MountIDUnique(f *os.File) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil {
		return 0, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
	}
	if stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0, fmt.Errorf("mount of %s: %w", f.Name(), ErrNoStatmount)
	}
	return stx.Mnt_id, nil
}
