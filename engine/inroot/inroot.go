// Package inroot resolves paths inside a container's own root filesystem,
// as the kernel does for a process whose root it is (symlinks followed
// within that root, never out of it), and reports each file's identity as
// the exec programs read it from the inode.
//
// Identity: the programs read inode->i_sb->s_dev and inode->i_ino of the
// file the kernel executes. stat(2) does not always report those (on an
// overlayfs whose layers sit on different file systems, st_dev of a file is
// a per-layer pseudo device), so the identity is taken from the kernel's
// own reports for the opened file: its inode number and mount ID (statx;
// fdinfo on kernels before 5.8), and the superblock device of that mount
// (statmount, or mountinfo), converted to the kernel's dev_t encoding.
// statx's inode number is file_inode()->i_ino, as fdinfo's is: overlayfs
// sets i_ino to the st_ino it reports, in every layer layout.
//
// Only the engine (engine/daemon) imports it.
package inroot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// maxSymlinks is the kernel's limit on symlinks in one resolution (MAXSYMLINKS).
const maxSymlinks = 40

// A Root is an open container root directory.
type Root struct {
	dir       *os.File
	mountinfo string
	// mountNS is the ID of the mount namespace the root's mounts are in,
	// for statmount; statmount is false where the kernel cannot report a
	// mount's device that way and mountinfo is read instead.
	mountNS   uint64
	statmount bool

	mu   sync.Mutex
	devs map[int]uint32 // mount ID -> kernel dev_t
	// newestMount is the newest unique mount ID of the root's namespace
	// when MarkMounts ran (0: not marked); a file on a newer mount sits on
	// a mount made since. markedNow: this Root is the one MarkMounts just
	// marked, before the workload ran, so no file can be on a newer mount
	// and lookups skip the check (a statx each, at container start).
	newestMount uint64
	markedNow   bool
}

// Open opens dir as a root. mountinfo is the mountinfo file of a process
// that sees the mounts below dir; empty means this process's.
func Open(dir, mountinfo string) (*Root, error) {
	f, err := linux.OpenBlocking(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("open container root: %w", err)
	}
	// This process's own mounts can be asked for by ID (namespace 0);
	// another's need that namespace's ID (OfProcess).
	r := &Root{dir: f, mountinfo: mountinfo, statmount: mountinfo == ""}
	if mountinfo == "" {
		r.mountinfo = "/proc/self/mountinfo"
	}
	return r, nil
}

// OfProcess opens the root of process pid: its own root when rootfs is
// empty (the process has pivoted into the container's root), else rootfs
// as a path in the process's mount namespace (an OCI create stage, before
// pivot_root).
func OfProcess(pid int, rootfs string) (*Root, error) {
	dir := fmt.Sprintf("/proc/%d/root", pid)
	if rootfs != "" {
		dir = filepath.Join(dir, rootfs)
	}
	r, err := Open(dir, fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil, err
	}
	if ns, err := linux.MountNamespaceID(pid); err == nil {
		r.mountNS, r.statmount = ns, true
	}
	return r, nil
}

// DeviceSource probes how this kernel lets roots opened through a process
// read their mounts' devices: "statmount" (by mount ID, Linux 6.11+) or
// "mountinfo" (the process's mountinfo, read once per root), with why.
func DeviceSource() string {
	self, err := os.Open("/")
	if err == nil {
		defer self.Close()
		var ns uint64
		if ns, err = linux.MountNamespaceID(os.Getpid()); err == nil {
			if _, _, err = linux.MountDevice(self, ns); err == nil {
				return "statmount"
			}
		}
	}
	return fmt.Sprintf("mountinfo (statmount: %v)", err)
}

// MountNS is the ID of the mount namespace the root's mounts are in, or 0
// where the kernel cannot name it. Every identity read through the root is
// asked of that namespace, so a root whose mount is elsewhere fails there.
func (r *Root) MountNS() uint64 { return r.mountNS }

// Close releases the root.
func (r *Root) Close() error { return r.dir.Close() }

// Clone is a second handle on the same root directory, with what this one
// learned of its mounts' devices: it resolves in the root as it was when
// opened, even once no process is left in that root's mount namespace
// (whose mounts the kernel then detaches, the root's own aside).
func (r *Root) Clone() (*Root, error) {
	dir, err := linux.Dup(r.dir)
	if err != nil {
		return nil, fmt.Errorf("clone root: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return &Root{dir: dir, mountinfo: r.mountinfo, mountNS: r.mountNS, statmount: r.statmount, devs: maps.Clone(r.devs), newestMount: r.newestMount}, nil
}

// MarkMounts records the newest mount of the root's mount namespace, so
// that later lookups report a file on a mount made since (File.OnNewMount):
// marked before a container's workload runs, such a mount is the
// workload's, and may hide the file a rule names. Unique mount IDs come
// from one counter and are never reused.
func (r *Root) MarkMounts() error {
	if r.mountNS == 0 && r.mountinfo != "/proc/self/mountinfo" {
		return errors.New("mark mounts: the root's mount namespace is not known")
	}
	id, err := linux.NewestMountID(r.mountNS)
	if err != nil {
		return fmt.Errorf("mark mounts: %w", err)
	}
	r.newestMount, r.markedNow = id, true
	return nil
}

// NewestMount is what MarkMounts recorded (0: not marked).
func (r *Root) NewestMount() uint64 { return r.newestMount }

// SetNewestMount takes a mark recorded earlier, by a root since closed
// (the engine's before a restart).
func (r *Root) SetNewestMount(id uint64) { r.newestMount, r.markedNow = id, false }

// onNewMount says whether f is on a mount made after MarkMounts.
func (r *Root) onNewMount(f *os.File) bool {
	if r.newestMount == 0 || r.markedNow {
		return false
	}
	id, err := linux.MountIDUnique(f)
	return err == nil && id > r.newestMount
}

// Name is the path the root was opened by.
func (r *Root) Name() string { return r.dir.Name() }

// ID is the identity of the root directory itself, which tells this root
// from a chroot a process made inside it.
func (r *Root) ID() (bpf.FileID, error) { return r.identity(r.dir) }

// A File is a path resolved inside a root.
type File struct {
	Path   string     // as asked
	Target string     // the resolved path inside the root
	Links  []string   // symlinks followed, in order, as paths inside the root
	ID     bpf.FileID // what the exec programs see
	Mode   fs.FileMode
	Nlink  uint64
	// OnNewMount: the file is on a mount made after the root was marked
	// (MarkMounts), which may hide the file the path named before.
	OnNewMount bool
}

// Resolve resolves an absolute path inside the root. A missing file gives
// an error wrapping fs.ErrNotExist.
func (r *Root) Resolve(p string) (File, error) {
	out := File{Path: p}
	var done []string // resolved components: real directories only
	todo := splitPath(p)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		cur := "/" + path.Join(append(done, c)...)
		f, err := linux.OpenInRoot(r.dir, cur, false, false)
		if err != nil {
			return out, fmt.Errorf("resolve %s in %s: %w", p, r.Name(), err)
		}
		st, err := linux.Fstat(f)
		if err != nil {
			f.Close()
			return out, fmt.Errorf("resolve %s in %s: %w", p, r.Name(), err)
		}
		if st.Mode&fs.ModeSymlink == 0 {
			f.Close()
			done = append(done, c)
			continue
		}
		target, err := linux.ReadlinkFd(f)
		f.Close()
		if err != nil {
			return out, fmt.Errorf("resolve %s in %s: %w", p, r.Name(), err)
		}
		if links++; links > maxSymlinks {
			return out, fmt.Errorf("resolve %s in %s: more than %d symlinks", p, r.Name(), maxSymlinks)
		}
		out.Links = append(out.Links, cur)
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(splitPath(target), todo...)
	}
	out.Target = "/" + path.Join(done...)

	// The kernel's own resolution decides the identity; the walk above only
	// names it. Both ran in the same root, so they agree unless the tree
	// changed in between, which the comparison below catches.
	found, statIno, err := r.lookup(p)
	if err != nil {
		return out, fmt.Errorf("resolve %s in %s: %w", p, r.Name(), err)
	}
	out.ID, out.Mode, out.Nlink, out.OnNewMount = found.ID, found.Mode, found.Nlink, found.OnNewMount
	if t, err := linux.OpenInRoot(r.dir, out.Target, false, false); err == nil {
		tst, serr := linux.Fstat(t)
		t.Close()
		if serr == nil && tst.Ino != statIno {
			return out, fmt.Errorf("resolve %s in %s: changed while resolving", p, r.Name())
		}
	}
	return out, nil
}

func splitPath(p string) []string { return strings.Split(p, "/") }

// Lookup is Resolve without naming the way: one resolution by the kernel,
// in the root, gives the file's identity, mode and link count; Target and
// Links stay empty. A registration needs only these, and it is on the
// path a container's start waits for.
func (r *Root) Lookup(p string) (File, error) {
	f, _, err := r.lookup(p)
	if err != nil {
		return f, fmt.Errorf("look up %s in %s: %w", p, r.Name(), err)
	}
	return f, nil
}

// lookup resolves p in the root and reads its identity; statIno is the
// inode number stat reports, for comparing with other stats.
func (r *Root) lookup(p string) (_ File, statIno uint64, _ error) {
	out := File{Path: p}
	f, err := linux.OpenInRoot(r.dir, p, true, false)
	if err != nil {
		return out, 0, err
	}
	defer f.Close()
	st, id, err := r.stat(f)
	if err != nil {
		return out, 0, err
	}
	out.Mode, out.Nlink, out.ID = st.Mode, st.Nlink, id
	out.OnNewMount = r.onNewMount(f)
	return out, st.Ino, nil
}

// identity reads f's inode identity as the kernel holds it.
func (r *Root) identity(f *os.File) (bpf.FileID, error) {
	_, id, err := r.stat(f)
	return id, err
}

// identify is linux.Identify; a test takes it away to check the fallback.
var identify = linux.Identify

// stat reads f's type and link count, and its identity as the kernel
// holds it: one statx where it names the mount (Linux 5.8+), else fstat
// and fdinfo.
func (r *Root) stat(f *os.File) (linux.FileStat, bpf.FileID, error) {
	fi, err := identify(f)
	ino := fi.Ino
	if err != nil {
		// No mount ID from statx (or statx refused, as a seccomp filter
		// may): fstat says what stat says, fdinfo what the kernel holds.
		if fi.FileStat, err = linux.Fstat(f); err == nil {
			fi.MntID, ino, err = fdinfo(f)
		}
	}
	if err != nil {
		return linux.FileStat{}, bpf.FileID{}, fmt.Errorf("identity of %s: %w", f.Name(), err)
	}
	dev, err := r.dev(f, fi.MntID)
	if err != nil {
		return linux.FileStat{}, bpf.FileID{}, fmt.Errorf("identity of %s: %w", f.Name(), err)
	}
	return fi.FileStat, bpf.FileID{Dev: dev, Ino: ino}, nil
}

// maxFdinfo bounds an fdinfo file; a path's or directory's is a few lines.
const maxFdinfo = 64 << 10

// fdinfoHead holds the first lines of an fdinfo file (pos, flags, mnt_id,
// ino), which are read without reading on to the end.
const fdinfoHead = 256

// fdinfo returns the mount ID and file_inode()->i_ino of an open file,
// where statx cannot name the mount.
func fdinfo(f *os.File) (mntID int, ino uint64, err error) {
	name := "/proc/self/fdinfo/" + strconv.FormatUint(uint64(f.Fd()), 10)
	var head [fdinfoHead]byte
	n, err := linux.ReadFileHead(name, head[:])
	if err != nil {
		return 0, 0, fmt.Errorf("identity of %s: %w", f.Name(), err)
	}
	if mntID, ino, ok := parseFdinfo(head[:n]); ok {
		return mntID, ino, nil
	}
	// Not in the head: the whole file.
	data, err := linux.ReadFileLimited(name, maxFdinfo)
	if err != nil {
		return 0, 0, fmt.Errorf("identity of %s: %w", f.Name(), err)
	}
	if mntID, ino, ok := parseFdinfo(data); ok {
		return mntID, ino, nil
	}
	return 0, 0, fmt.Errorf("identity of %s: %s has no mnt_id or ino line", f.Name(), name)
}

// parseFdinfo finds the mnt_id and ino lines in an fdinfo file or its head,
// whose last line may be cut short: only whole lines count.
func parseFdinfo(data []byte) (mntID int, ino uint64, ok bool) {
	var haveMnt, haveIno bool
	for line := range bytes.Lines(data) {
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found || line[len(line)-1] != '\n' {
			continue
		}
		v = bytes.TrimSpace(v)
		var err error
		switch string(k) {
		case "mnt_id":
			mntID, err = strconv.Atoi(string(v))
			haveMnt = err == nil
		case "ino":
			ino, err = strconv.ParseUint(string(v), 10, 64)
			haveIno = err == nil
		}
	}
	return mntID, ino, haveMnt && haveIno
}

// dev finds the superblock device of the mount f is on (mntID): from the
// kernel by mount ID where it can say (statmount), else in mountinfo (read
// once per Root; reread when a mount is not found, as one may have appeared
// since). Rendering a node's mountinfo costs far more than one statmount.
func (r *Root) dev(f *os.File, mntID int) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.devs[mntID]; ok {
		return d, nil
	}
	if r.statmount {
		major, minor, err := linux.MountDevice(f, r.mountNS)
		if err == nil {
			if r.devs == nil {
				r.devs = map[int]uint32{}
			}
			r.devs[mntID] = bpf.KernelDev(major, minor)
			return r.devs[mntID], nil
		}
		if !errors.Is(err, linux.ErrNoStatmount) {
			return 0, err
		}
		r.statmount = false
	}
	devs, err := readMountDevs(r.mountinfo)
	if err != nil {
		return 0, err
	}
	r.devs = devs
	if d, ok := devs[mntID]; ok {
		return d, nil
	}
	// A root opened through another process may hold mounts this process
	// sees, and the other way round.
	if r.mountinfo != "/proc/self/mountinfo" {
		if self, err := readMountDevs("/proc/self/mountinfo"); err == nil {
			if d, ok := self[mntID]; ok {
				return d, nil
			}
		}
	}
	return 0, fmt.Errorf("mount %d not in %s", mntID, r.mountinfo)
}

// readMountDevs maps mount IDs to the major:minor field of mountinfo, which
// is the superblock's s_dev.
func readMountDevs(name string) (map[int]uint32, error) {
	// One read: it is on every registration's path, and a scanner's
	// buffer cost as much as the kernel's rendering of the file.
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	devs := map[int]uint32{}
	for line := range strings.Lines(string(data)) {
		fields := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 4)
		if len(fields) < 3 {
			continue
		}
		id, err := strconv.Atoi(fields[0])
		if err != nil {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		devs[id] = bpf.KernelDev(uint32(ma), uint32(mi))
	}
	return devs, nil
}

// Aliases lists the names in dirs (paths inside the root) that resolve to
// the file id: the symlinks and hard links a multi-call binary is installed
// under. Missing directories are skipped.
func (r *Root) Aliases(id bpf.FileID, dirs []string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		f, err := linux.OpenInRoot(r.dir, d, false, true)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ELOOP) {
				continue
			}
			return out, fmt.Errorf("aliases in %s: %w", r.Name(), err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return out, fmt.Errorf("aliases in %s: list %s: %w", r.Name(), d, err)
		}
		for _, n := range names {
			p := path.Join(d, n)
			h, err := linux.OpenInRoot(r.dir, p, true, false)
			if err != nil {
				continue // dangling link and the like
			}
			st, err := linux.Fstat(h)
			// The inode number first; the full identity only for candidates.
			if err == nil && st.Mode == 0 && st.Ino == id.Ino {
				if got, err := r.identity(h); err == nil && got == id {
					out = append(out, p)
				}
			}
			h.Close()
		}
	}
	return out, nil
}

// Interpreter returns the interpreter a "#!" script at p names (resolved
// inside the root), or ok false when p is not a script.
func (r *Root) Interpreter(p string) (interp string, ok bool, err error) {
	h, err := linux.OpenInRoot(r.dir, p, true, false)
	if err != nil {
		return "", false, fmt.Errorf("read %s in %s: %w", p, r.Name(), err)
	}
	defer h.Close()
	// Reopening the O_PATH handle reads the very file that was resolved;
	// only a regular file, as a FIFO's open would wait for a writer.
	f, err := linux.OpenRegular(fmt.Sprintf("/proc/self/fd/%d", h.Fd()))
	if err != nil {
		return "", false, fmt.Errorf("read %s in %s: %w", p, r.Name(), err)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.Read(head)
	line, _, _ := strings.Cut(string(head[:n]), "\n")
	if !strings.HasPrefix(line, "#!") {
		return "", false, nil
	}
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(fields) == 0 {
		return "", false, nil
	}
	return fields[0], true, nil
}
