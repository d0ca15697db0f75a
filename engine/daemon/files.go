package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/inroot"
	"github.com/holdfast-dev/holdfast/engine/policy"
)

// Fields of exec rules, as policy.RuleInfo.Field names them.
const (
	fieldExecDeny  = "spec.exec.deny["
	fieldExecAllow = "spec.exec.allow["
)

// binDirs are where a multi-call binary installs its applet names.
var binDirs = []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}

// multiCallNames is how many names in binDirs make a file a multi-call
// binary (busybox, toybox, coreutils' single binary).
const multiCallNames = 4

// execRules are the exec deny and allow rules of the policies selecting c,
// in set order.
func (e *Engine) execRules(c api.Container) []policy.RuleInfo {
	return execRulesOf(e.policies, c)
}

func execRulesOf(set *policy.Set, c api.Container) []policy.RuleInfo {
	var out []policy.RuleInfo
	for _, p := range set.Select(identity(c)) {
		for _, r := range set.Rules(p) {
			if r.Kind == policy.KindExec || r.Kind == policy.KindExecAllow {
				out = append(out, r)
			}
		}
	}
	return out
}

// Rules scoped to ancestors match by path only: an identity has no scope.
func isExactDeny(r policy.RuleInfo) bool {
	return strings.HasPrefix(r.Field, fieldExecDeny) && !strings.HasSuffix(r.Text, "/") && r.From == ""
}

func isExactAllow(r policy.RuleInfo) bool {
	return strings.HasPrefix(r.Field, fieldExecAllow) && !strings.HasSuffix(r.Text, "/")
}

// isDirDeny says whether r denies a directory below "/" ("/" covers every
// file by path alone).
func isDirDeny(r policy.RuleInfo) bool {
	return strings.HasPrefix(r.Field, fieldExecDeny) && strings.HasSuffix(r.Text, "/") && r.Text != "/" && r.From == ""
}

// openRoot opens the container's root filesystem: through the
// registrar's pid (and rootfs) while that pid still shows the root the
// container was registered with, else through any process of its cgroup
// whose root is that root (a process that chrooted elsewhere does not
// count). It records the root's identity in c.RootID the first time.
// registrar, when not 0, is the pid of a registrar that runs in the
// container's mount namespace before pivot_root (a createContainer hook):
// rootfs leads to the root from it, without looking for a process.
func (e *Engine) openRoot(c *api.Container, registrar int) (*inroot.Root, error) {
	if r := e.roots.get(c.ID, c.RootID); r != nil {
		return r, nil
	}
	var errs []error
	try := func(pid int, rootfs string) *inroot.Root {
		r, err := inroot.OfProcess(pid, rootfs)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		id, err := r.ID()
		if err != nil {
			r.Close()
			errs = append(errs, err)
			return nil
		}
		if c.RootID == "" {
			c.RootID = id.String()
		}
		if id.String() != c.RootID {
			r.Close()
			errs = append(errs, fmt.Errorf("root of pid %d is %s, not the container's %s", pid, id, c.RootID))
			return nil
		}
		if c.RootMountNS == 0 {
			c.RootMountNS = r.MountNS()
		}
		if ns := r.MountNS(); ns != 0 && ns != c.RootMountNS {
			r.Close()
			errs = append(errs, fmt.Errorf("pid %d is in mount namespace %d, not the container's %d", pid, ns, c.RootMountNS))
			return nil
		}
		// Marked at the first opening, before the workload runs (at
		// registration); later openings (after a restart) take that mark.
		if c.RootNewestMount == 0 {
			if err := r.MarkMounts(); err == nil {
				c.RootNewestMount = r.NewestMount()
			}
		} else {
			r.SetNewestMount(c.RootNewestMount)
		}
		return r
	}
	if c.Pid > 0 {
		if r := try(c.Pid, c.Rootfs); r != nil {
			return r, nil
		}
		e.log.Debug("registrar's pid does not lead to the container's root", "id", c.ID, "pid", c.Pid, "err", errs[len(errs)-1])
	}
	if registrar > 0 && c.Rootfs != "" {
		if r := try(registrar, c.Rootfs); r != nil {
			return r, nil
		}
	}
	if c.CgroupPath != "" {
		// Before pivot_root the rootfs path leads to the root, after it
		// the process's own root does; the root's identity tells which.
		for _, pid := range cgroupPids(c.CgroupPath, 64) {
			if c.Rootfs != "" {
				if r := try(pid, c.Rootfs); r != nil {
					return r, nil
				}
			}
			if r := try(pid, ""); r != nil {
				return r, nil
			}
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("root of container %s: no process known", c.ID)
	}
	return nil, fmt.Errorf("root of container %s: %w", c.ID, errors.Join(errs...))
}

// cgroupPids lists up to max processes of a cgroup and its descendants.
func cgroupPids(dir string, max int) []int {
	var pids []int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || len(pids) >= max {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && len(pids) < max {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// syncFilesLocked resolves c's exact and directory-prefix exec deny rules in
// its root and makes the resulting file and directory identities c's
// cgroup's file rules. It runs before the cgroup entry is written, so a
// container is never enforced by path alone. Without a root (no live
// process) the previous identities stay.
func (e *Engine) syncFilesLocked(c *api.Container) error {
	return e.writeFilesLocked(c, e.resolveFiles(e.policies, c, 0))
}

// resolvedFiles are a container's exec rules resolved in its root under
// one policy set. Resolving reads the container's files and mountinfo, so
// a registration does it before taking the engine lock.
type resolvedFiles struct {
	set         *policy.Set
	rootID      string // the root resolved in, for c.RootID
	rootMountNS uint64 // and its mount namespace, for c.RootMountNS
	rootNewest  uint64 // and its newest mount then, for c.RootNewestMount
	files       []bpf.FileRule
	err         error
}

// resolveFiles resolves c's identity-matched exec rules of set in c's
// root. It reads no engine state but the logger, so it needs no lock.
func (e *Engine) resolveFiles(set *policy.Set, c *api.Container, registrar int) resolvedFiles {
	out := resolvedFiles{set: set}
	var rules []policy.RuleInfo
	for _, r := range execRulesOf(set, *c) {
		if isExactDeny(r) || isExactAllow(r) || isDirDeny(r) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		// Nothing to resolve yet; the root is still kept while only the
		// runtime has run in the container, for a reload that brings rules.
		if c.RootID == "" && (c.Pid > 0 || (registrar > 0 && c.Rootfs != "")) {
			if root, err := e.openRoot(c, registrar); err == nil {
				out.rootID, out.rootMountNS, out.rootNewest = c.RootID, c.RootMountNS, c.RootNewestMount
				e.roots.keepOrClose(c.ID, c.RootID, root)
			}
		}
		return out
	}
	root, err := e.openRoot(c, registrar)
	if err != nil {
		out.err = fmt.Errorf("files of container %s: %w", c.ID, err)
		return out
	}
	// Kept once its rules are looked up: from then on it is the kept root's.
	defer e.roots.keepOrClose(c.ID, c.RootID, root)
	out.rootID, out.rootMountNS, out.rootNewest = c.RootID, c.RootMountNS, c.RootNewestMount
	for _, r := range rules {
		f, err := root.Lookup(r.Text)
		if err != nil {
			// Nothing to deny by identity; the path rule still holds if the
			// file appears later.
			e.log.Debug("exec rule resolves to nothing", "id", c.ID, "rule", r.Text, "err", err)
			continue
		}
		if f.OnNewMount {
			e.log.Warn("exec rule resolves onto a mount the container made after it started: a file that mount hides is not covered by identity",
				"id", c.ID, "rule", r.Text)
		}
		dir := isDirDeny(r)
		if dir != f.Mode.IsDir() {
			// A prefix rule naming a file, or an exact rule a directory,
			// covers nothing by identity (Explain says so).
			e.log.Debug("exec rule resolves to the wrong kind of file", "id", c.ID, "rule", r.Text, "mode", f.Mode)
			continue
		}
		out.files = append(out.files, bpf.FileRule{File: f.ID, RuleID: r.ID, Dir: dir, Allow: isExactAllow(r)})
	}
	e.log.Debug("exec rules resolved", "id", c.ID, "root", root.Name(), "files", out.files)
	return out
}

// writeFilesLocked puts resolved identities in the maps. Without a root
// (no live process) the previous identities stay.
func (e *Engine) writeFilesLocked(c *api.Container, r resolvedFiles) error {
	if r.err != nil {
		return r.err
	}
	if r.rootID != "" && c.RootID == "" {
		c.RootID, c.RootMountNS, c.RootNewestMount = r.rootID, r.rootMountNS, r.rootNewest
	}
	if err := e.enforcer.SetCgroupFiles(c.CgroupID, r.files); err != nil {
		return fmt.Errorf("files of container %s: %w", c.ID, err)
	}
	return nil
}

// deleteFilesLocked drops a cgroup's file rules.
func (e *Engine) deleteFilesLocked(cgroupID uint64) error {
	if err := e.enforcer.DeleteCgroupFiles(cgroupID); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// dropStaleFilesLocked removes file rules of cgroups that are not wanted.
func (e *Engine) dropStaleFilesLocked(wanted map[uint64]bool) error {
	cgs, err := e.enforcer.FileCgroups()
	if err != nil {
		return err
	}
	var errs []error
	for _, cg := range cgs {
		if !wanted[cg] {
			errs = append(errs, e.deleteFilesLocked(cg))
		}
	}
	return errors.Join(errs...)
}

// Explain implements api.Explainer.
func (e *Engine) Explain(ctx context.Context, id string) (*api.Explanation, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.reg.Get(id)
	if !ok {
		return nil, fmt.Errorf("explain %s: %w", id, api.ErrNotFound)
	}
	ex := &api.Explanation{Container: c, Rules: []api.ExplainedRule{}, PolicyModes: map[string]string{}}
	for _, p := range e.policies.Select(identity(c)) {
		ex.PolicyModes[p.Name] = p.Mode()
	}
	rules := e.execRules(c)
	enforced := map[bpf.FileRule]bool{}
	if files, err := e.enforcer.CgroupFiles(c.CgroupID); err == nil {
		for _, f := range files {
			enforced[f] = true
		}
	}
	root, err := e.openRoot(&c, 0)
	if err != nil {
		ex.RootError = err.Error()
		for _, r := range rules {
			ex.Rules = append(ex.Rules, api.ExplainedRule{Policy: r.Policy, Field: r.Field, Rule: r.Text, RuleID: r.ID, Mode: r.Mode})
		}
		return ex, nil
	}
	defer root.Close()
	ex.Root = root.Name()

	// The entrypoint and, for a script, its interpreter: the file the
	// kernel runs first.
	var entry, interp *inroot.File
	if len(c.Entrypoint) > 0 {
		if f, err := resolveCommand(root, c.Entrypoint[0]); err == nil {
			entry = &f
			ex.Entrypoint = resolvedFile(f)
			if ip, ok, _ := root.Interpreter(f.Target); ok {
				if i, err := root.Resolve(ip); err == nil {
					interp = &i
				}
			}
		} else {
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("entrypoint %s resolves to nothing in this image: %v", c.Entrypoint[0], rootless(err, root)))
		}
	}

	// Allow lists (spec.exec.allow): the entrypoint, and a script's
	// interpreter, must be on them or the container dies at start.
	var allow []string
	var allowedIDs []bpf.FileID
	for _, r := range rules {
		x := api.ExplainedRule{Policy: r.Policy, Field: r.Field, Rule: r.Describe(), RuleID: r.ID, Mode: r.Mode}
		f, err := root.Resolve(r.Text)
		if err == nil && f.OnNewMount {
			x.Warnings = append(x.Warnings, fmt.Sprintf("%s is on a mount the container made after it started: a file that mount hides is not covered by identity", r.Text))
		}
		switch {
		case err != nil:
			x.Warnings = append(x.Warnings, fmt.Sprintf("resolves to nothing in this image (%v); it holds by path only, if the file appears later", rootless(err, root)))
		case r.From != "":
			// Scoped rules match by the path the kernel resolves, never by
			// identity, and not the container's first process.
			x.File = resolvedFile(f)
			if want := strings.TrimSuffix(r.Text, "/"); f.Target != want {
				x.Warnings = append(x.Warnings, fmt.Sprintf("rules scoped to ancestors match the resolved path only: in this image %s is %s; write that path", want, f.Target))
			}
		case strings.HasSuffix(r.Text, "/"):
			x.File = resolvedFile(f)
			x.Enforced = enforced[bpf.FileRule{File: f.ID, RuleID: r.ID, Dir: true}]
			if want := strings.TrimSuffix(r.Text, "/"); r.Text != "/" && f.Target != want && !x.Enforced {
				x.Warnings = append(x.Warnings, fmt.Sprintf("directory prefix rules match the resolved path, and by identity only once resolved: in this image %s is %s/, and the directory is not denied by identity; write %s/", r.Text, f.Target, f.Target))
			}
		case strings.HasPrefix(r.Field, fieldExecAllow):
			// Exact allow rules are resolved like deny rules: the file they
			// name here is allowed by identity, and the path as written.
			x.File = resolvedFile(f)
			x.Enforced = enforced[bpf.FileRule{File: f.ID, RuleID: r.ID, Allow: true}]
			allowedIDs = append(allowedIDs, f.ID)
			if names := multiCall(root, f); len(names) > 0 {
				x.Warnings = append(x.Warnings, fmt.Sprintf("%s is a multi-call binary (installed as %d names: %s): allowing it lets it run every applet, in-process or through /proc/self/exe, whichever of its names are listed",
					f.Target, len(names), strings.Join(shorten(names, 6), ", ")))
			}
		default:
			x.File = resolvedFile(f)
			x.Enforced = enforced[bpf.FileRule{File: f.ID, RuleID: r.ID}]
			if names := multiCall(root, f); len(names) > 0 {
				x.Warnings = append(x.Warnings, fmt.Sprintf("%s is a multi-call binary (installed as %d names: %s): denying it denies every applet, and one applet cannot be denied alone, since applets also run in-process or through /proc/self/exe",
					f.Target, len(names), strings.Join(shorten(names, 6), ", ")))
			}
			if entry != nil && entry.ID == f.ID && strings.HasPrefix(r.Field, fieldExecDeny) {
				ex.Warnings = append(ex.Warnings, fmt.Sprintf("the entrypoint %s is denied by %s %s: the container dies at start", c.Entrypoint[0], r.Policy, r.Field))
			}
			if interp != nil && interp.ID == f.ID && strings.HasPrefix(r.Field, fieldExecDeny) {
				ex.Warnings = append(ex.Warnings, fmt.Sprintf("the entrypoint %s is a script run by %s, which %s %s denies: the container dies at start",
					c.Entrypoint[0], interp.Path, r.Policy, r.Field))
			}
		}
		if strings.HasPrefix(r.Field, fieldExecAllow) {
			allow = append(allow, r.Text)
		}
		ex.Rules = append(ex.Rules, x)
	}
	// The kernel allows an exec by the identity of a file an exact rule
	// resolved to, or by the path it resolved (f.Target) under a rule.
	onAllowList := func(f *inroot.File) bool {
		if slices.Contains(allowedIDs, f.ID) {
			return true
		}
		for _, a := range allow {
			if a == f.Target || strings.HasSuffix(a, "/") && underDir(f.Target, a) {
				return true
			}
		}
		return false
	}
	if len(allow) > 0 && len(c.Entrypoint) > 0 {
		switch {
		case entry == nil:
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("the allow list does not contain the entrypoint %s: the container dies at start", c.Entrypoint[0]))
		case !onAllowList(entry):
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("the allow list does not contain the entrypoint %s%s: the container dies at start", c.Entrypoint[0], matchedAs(*entry)))
		case interp != nil && !onAllowList(interp):
			ex.Warnings = append(ex.Warnings, fmt.Sprintf("the allow list does not contain %s%s, the interpreter of the entrypoint %s: the container dies at start", interp.Path, matchedAs(*interp), c.Entrypoint[0]))
		}
	}
	return ex, nil
}

// matchedAs names the path an allow list must hold for f when it differs
// from the name f was asked by.
func matchedAs(f inroot.File) string {
	if f.Target == f.Path {
		return ""
	}
	return " (list it as " + f.Target + ")"
}

// rootless drops the root's own path from an error, which only repeats it.
func rootless(err error, root *inroot.Root) string {
	return strings.ReplaceAll(err.Error(), " in "+root.Name(), "")
}

func resolvedFile(f inroot.File) *api.ResolvedFile {
	return &api.ResolvedFile{Target: f.Target, Links: f.Links, ID: f.ID.String()}
}

func underDir(p, dir string) bool {
	return dir == "/" || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func shorten(names []string, n int) []string {
	if len(names) <= n {
		return names
	}
	return append(names[:n:n], "...")
}

// multiCall returns the names f is installed under when it is a multi-call
// binary: named busybox, or reachable under several names in binDirs.
func multiCall(root *inroot.Root, f inroot.File) []string {
	names, err := root.Aliases(f.ID, binDirs)
	if err != nil {
		return nil
	}
	if len(names) >= multiCallNames || path.Base(f.Target) == "busybox" && len(names) > 1 {
		return names
	}
	return nil
}

// resolveCommand finds argv[0] as execvp would with the OCI default PATH.
func resolveCommand(root *inroot.Root, arg0 string) (inroot.File, error) {
	if strings.Contains(arg0, "/") {
		return root.Resolve(path.Join("/", arg0))
	}
	var last error
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		f, err := root.Resolve(path.Join(d, arg0))
		if err == nil && f.Mode == 0 {
			return f, nil
		}
		last = err
	}
	return inroot.File{}, fmt.Errorf("%s not found in PATH: %w", arg0, last)
}

// uncoveredExec lists, for an exec mode, the routes to running code of a
// denied file, or an unlisted one, that the programs do not stop. README's
// "What stays uncovered" says the same.
func uncoveredExec(mode string) []string {
	out := []string{
		"deny rules without an allow list: a copy of a denied file, a file written at run time, a memfd or /proc/self/fd/N of one; only exec.allow stops new files",
		"allow lists also match by resolved path: a process that can mount (CAP_SYS_ADMIN, a user namespace) can make an unlisted file appear at an allowed path; chroot does not change the path",
		"one applet of a multi-call binary (busybox): applets run in-process or through /proc/self/exe; deny the binary or nothing",
		"a file put at a denied exact path, or a directory created at a denied prefix, after registration: matched by resolved path only, not by identity",
		"containers without a live process at registration or reload (holdfast containers add on an empty cgroup): exact and directory-prefix rules hold by path only",
		"a container no identity-matched rule selected at registration, registered by an engine that has since restarted: the first reload that brings one resolves it through whichever process shows its root then, which a decoy mounted in a mount namespace of the workload's own can steer (without a restart the root kept open since registration is used)",
		"a container task that neither exec'd nor forked since the programs were loaded and moves itself out of its container's cgroup, and a move into another container's cgroup by such a task: the move is not seen as leaving",
		"code copied into anonymous executable memory (a loader that reads a denied file and maps its bytes): only file-backed mappings are checked",
		"on an overlay whose upper and lower layers are on different file systems (no xino), a hard link made inside the container is a new inode",
		"a hard link, made in another directory, of a file below a denied directory prefix: prefix rules follow the exec'd name's parent chain",
		"an overlay the workload mounts itself (user namespace or CAP_SYS_ADMIN) over a denied directory or file: its files have identities and paths of their own",
	}
	if mode == bpf.ModeKill {
		out = append(out,
			"a script in a denied path run through an allowed interpreter: kill mode checks the interpreter only, for deny and allow rules",
			"the exec itself succeeds: the new image is killed before its first instruction, the parent sees SIGKILL",
			"mapped files are checked at x86-64 system call entry and exit (64-bit and ia32 calls); other architectures are not covered in kill mode")
	}
	return out
}

// resolveAhead resolves c's exec rules under the policies in force now,
// outside the engine lock, so concurrent registrations resolve in parallel;
// a reload meanwhile makes the registration resolve again under the lock.
func (e *Engine) resolveAhead(ctx context.Context, c *api.Container) resolvedFiles {
	e.mu.Lock()
	set := e.policies
	e.sameRootLocked(c)
	e.mu.Unlock()
	registrar := 0
	if c.PeerInContainer {
		registrar, _ = api.PeerPID(ctx) // checked to be in c's cgroup
	}
	return e.resolveFiles(set, c, registrar)
}

// sameRootLocked gives a registration of a container already registered
// in the same cgroup (a registrar's resync) the root recorded the first
// time, so it resolves there, not through what its processes see now.
func (e *Engine) sameRootLocked(c *api.Container) {
	if c.RootID != "" {
		return
	}
	if prev, ok := e.reg.Get(c.ID); ok && prev.CgroupID == c.CgroupID {
		c.RootID, c.RootMountNS, c.RootNewestMount = prev.RootID, prev.RootMountNS, prev.RootNewestMount
	}
}

// keptRoots holds each container's root as the engine first opened it, at
// registration, while only the runtime had run in the container. Later
// resolutions (a reload, explain) use it: a workload that has since made a
// mount namespace of its own, with a decoy mounted over a denied file, can
// no longer steer where rules resolve. Lost on a restart, when roots are
// opened through the container's processes again.
type keptRoots struct {
	mu    sync.Mutex
	roots map[string]keptRoot
}

type keptRoot struct {
	root *inroot.Root
	id   string // the root's identity, as RootID records it
}

// keepOrClose keeps root, which the caller is done with, as id's unless
// id's root (rootID) is kept already, in which case it closes it. The root
// itself is kept, not a copy: a registration does not pay for a dup.
func (k *keptRoots) keepOrClose(id, rootID string, root *inroot.Root) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old, ok := k.roots[id]
	if ok && old.id == rootID {
		root.Close()
		return
	}
	// It is only ever handed out cloned (get), and a clone checks every
	// lookup for mounts made since the mark, as lookups after the
	// workload has run must.
	if ok {
		old.root.Close()
	}
	if k.roots == nil {
		k.roots = map[string]keptRoot{}
	}
	k.roots[id] = keptRoot{root: root, id: rootID}
}

// get is a clone of id's kept root, for the caller to close, or nil when
// none is kept or it is not the root (rootID) the registration records. A
// registration that records no root yet (a new one) gets nil: it opens its
// root through the registrar's process, and keeps that.
func (k *keptRoots) get(id, rootID string) *inroot.Root {
	if rootID == "" {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	kept, ok := k.roots[id]
	if !ok || kept.id != rootID {
		return nil
	}
	r, err := kept.root.Clone()
	if err != nil {
		return nil
	}
	return r
}

// drop closes id's kept root.
func (k *keptRoots) drop(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kept, ok := k.roots[id]; ok {
		kept.root.Close()
		delete(k.roots, id)
	}
}

func (k *keptRoots) closeAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, kept := range k.roots {
		kept.root.Close()
		delete(k.roots, id)
	}
}
