// Package daemon is the holdfast engine: it owns the registry of containers,
// the loaded policies and the pinned BPF enforcer, and keeps the three in
// step. The BPF state outlives the engine process; on start the engine
// adopts it and reconciles it with its registry instead of reloading.
//
// Only the holdfast command imports it; registrars and engine/api do not.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/inroot"
	"github.com/holdfast-dev/holdfast/engine/lineage"
	"github.com/holdfast-dev/holdfast/engine/policy"
	"github.com/holdfast-dev/holdfast/engine/registry"
)

// LockFile in the state dir is flocked by the engine that owns the state.
const LockFile = "engine.lock"

// Version is the engine's version, reported by status.
var Version = "0.1.0-dev"

// Options configure an Engine. Zero values take the documented defaults.
type Options struct {
	PolicyDir string // --policies
	StateDir  string // --state-dir
	BPFDir    string // --bpf-dir
	// CgroupRoot overrides the detected cgroup v2 mount (tests, unusual hosts).
	CgroupRoot string
	Events     io.Writer // JSON lines; nil discards
	Log        *slog.Logger
	// Discover lists containers that exist already (e.g. through CRI) to
	// register under DiscoverSource, from ReconcileDiscovered. Optional.
	// known tells the containers registered already, which Discover may
	// list by ID alone.
	Discover       func(ctx context.Context, m cgroup.Mount, known func(id string) bool) ([]api.Container, error)
	DiscoverSource string
	// DiscoverInterval repeats Discover: containers it finds that nothing
	// registered are registered, and its own registrations of containers
	// it no longer finds are removed. 0: only at start.
	DiscoverInterval time.Duration
	// DiscoverEndpoint names what Discover asks, for status.
	DiscoverEndpoint string
	// PodSandbox asks the CRI runtime for a pod sandbox's identity and
	// labels, for containers whose sandbox was not registered. Optional.
	PodSandbox func(ctx context.Context, sandboxID string) (*api.Pod, error)
	// Capacity sizes the BPF maps when they are created (--max-* flags).
	Capacity bpf.Capacity
	// SummaryInterval is how often denial summaries are written (default
	// bpf.EventWindow, the kernel's rate-limit window).
	SummaryInterval time.Duration
	// WatchPolicies: WatchPolicies runs, and the engine is not ready
	// until it watches the policy dir. PolicyDebounce is the quiet time
	// after a change before it is applied (default DefaultPolicyDebounce).
	WatchPolicies  bool
	PolicyDebounce time.Duration
	Observe        ObserveOptions
	// OpenEnforcer and OpenEnforcerMaps replace bpf.Open and bpf.OpenMaps,
	// and CgroupID replaces cgroup.ID (tests without a kernel). Optional.
	OpenEnforcer     func(bpf.Layout, bpf.Options) (Enforcer, error)
	OpenEnforcerMaps func(bpf.Layout) (Enforcer, error)
	CgroupID         func(dir string) (uint64, error)
}

// Engine implements api.Handler over the registry, policies and enforcer.
type Engine struct {
	opts    Options
	log     *slog.Logger
	cgroups cgroup.Mount
	// cgroupFS reads a cgroup's ID at one stat (nil: cgroup.ID's two).
	cgroupFS *cgroup.FS
	// selfCgroups: the engine's cgroup and its ancestors, never registered.
	selfCgroups map[uint64]string
	enforcer    Enforcer
	// processes names an event's process and its ancestors (process.go).
	processes *lineage.Walker
	// lock is the flock on the state dir: one engine per node state.
	lock *os.File
	// obs numbers, redacts and fans out event lines (observe.go).
	obs *observation

	mu       sync.Mutex
	reg      *registry.Store
	policies *policy.Set
	// policyErr is the last policy load failure; the previous set stays.
	policyErr error
	// rulesetOf caches the ruleset key each registered container uses.
	rulesetOf map[string]string
	// liveRulesets are ruleset IDs known to be written in the maps.
	liveRulesets map[uint32]bool
	// orphans are pinned cgroup entries no registration accounts for; they
	// stay enforced while their cgroup exists.
	orphans map[uint64]api.Orphan
	// gone names recently unregistered containers by cgroup (events.go).
	gone goneContainers
	// roots are the containers' roots as opened at registration (files.go).
	roots keptRoots
	// discovered is the outcome of the last Discover run.
	discovered discoverRun
	// watch is the policy directory watcher's state.
	watch policyWatch
}

var _ api.Handler = (*Engine)(nil)

// newEngine is an Engine over opts with nothing opened yet.
func newEngine(opts Options) *Engine {
	e := &Engine{opts: opts, log: opts.Log, rulesetOf: map[string]string{}, liveRulesets: map[uint32]bool{}, orphans: map[uint64]api.Orphan{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	return e
}

// New opens the registry and policies and adopts or loads the BPF programs.
// Enforcement is in force for every registered container when it returns.
func New(ctx context.Context, opts Options) (*Engine, error) {
	e := newEngine(opts)
	// Before anything is touched: a second engine on this state would
	// fight the first over the registry, the maps and the socket.
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("start engine: create state dir %s: %w", opts.StateDir, err)
	}
	lock, err := lockStateDir(ctx, filepath.Join(opts.StateDir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("start engine: another engine uses state dir %s: %w", opts.StateDir, err)
	}
	e.lock = lock
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	if e.cgroups, err = cgroupMount(opts); err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}
	if fs, err := cgroup.OpenFS(e.cgroups.Root); err == nil {
		e.cgroupFS = &fs
	}
	e.selfCgroups = engineCgroups(e.cgroups, e.cgroupID)
	if err := e.startObserving(); err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}

	// The pinned programs and maps are opened (or loaded) while the
	// policies and the registry are read: neither needs the other, and
	// with many containers each is a good part of a restart.
	type opened struct {
		enf Enforcer
		err error
	}
	enfc := make(chan opened, 1)
	go func() {
		enf, err := e.openEnforcer(bpf.Layout{Root: opts.BPFDir}, bpf.Options{CgroupRoot: e.cgroups.Root, Log: e.log, Capacity: opts.Capacity})
		enfc <- opened{enf, err}
	}()
	reg, err := e.loadState()
	o := <-enfc
	if err != nil || o.err != nil {
		if o.enf != nil {
			o.enf.Close()
		}
		if reg != nil {
			reg.Close()
		}
		return nil, fmt.Errorf("start engine: %w", errors.Join(err, o.err))
	}
	enf := o.enf
	e.enforcer = enf
	if err := enf.SetEnvCapture(opts.Observe.CaptureEnv); err != nil {
		enf.Close()
		reg.Close()
		return nil, fmt.Errorf("start engine: %w", err)
	}
	if e.processes, err = e.newWalker(); err != nil {
		enf.Close()
		reg.Close()
		return nil, fmt.Errorf("start engine: %w", err)
	}

	e.mu.Lock()
	err = e.reconcileLocked(false)
	e.mu.Unlock()
	if err != nil {
		enf.Close()
		reg.Close()
		return nil, fmt.Errorf("start engine: %w", err)
	}
	ok = true
	return e, nil
}

// LogControls logs each enforcement point's mode and why. With an adopted
// set this runs its probes, which start-up leaves until it serves.
func (e *Engine) LogControls() {
	for _, c := range e.enforcer.Controls() {
		e.log.Info("enforcement mode", "control", c.Name, "mode", c.Mode, "reason", c.Reason)
	}
}

// loadState reads the policies and opens the registry.
func (e *Engine) loadState() (*registry.Store, error) {
	set, err := e.loadPolicies()
	if err != nil {
		return nil, err
	}
	e.policies = set
	reg, err := registry.Open(filepath.Join(e.opts.StateDir, "registry"))
	if err != nil {
		if reg == nil {
			return nil, err
		}
		e.log.Error("registry entries skipped", "err", err)
	}
	e.reg = reg
	return reg, nil
}

// Close releases the engine's file descriptors. The pinned programs keep
// enforcing.
func (e *Engine) Close() error {
	e.roots.closeAll()
	return errors.Join(e.enforcer.Close(), e.reg.Close(), e.lock.Close())
}

// Enforcer gives access to the BPF enforcer (events, status).
func (e *Engine) Enforcer() Enforcer { return e.enforcer }

// loadPolicies reads the policy dir. If it is bad, the last good snapshot in
// the state dir is used, so a typo never switches enforcement off.
func (e *Engine) loadPolicies() (*policy.Set, error) {
	snapshot := filepath.Join(e.opts.StateDir, "policies")
	set, err := policy.LoadDir(e.opts.PolicyDir)
	if err == nil {
		if err := e.snapshotPolicies(set, snapshot); err != nil {
			e.log.Error("save policy snapshot", "err", err)
		}
		return set, nil
	}
	e.policyErr = err
	e.log.Error("policies refused; using the last good snapshot", "dir", e.opts.PolicyDir, "err", err)
	prev, serr := policy.LoadDir(snapshot)
	if serr != nil {
		return nil, fmt.Errorf("load policies: %w (and no usable snapshot: %v)", err, serr)
	}
	return prev, nil
}

// snapshotPolicies copies the files of a good set into dir.
func (e *Engine) snapshotPolicies(set *policy.Set, dir string) error {
	var files []string
	for _, p := range set.Policies() {
		files = append(files, p.File)
	}
	if err := snapshotFiles(files, dir); err != nil {
		return fmt.Errorf("policy snapshot: %w", err)
	}
	return nil
}

// Reload re-reads the policy dir. A bad dir is refused with the reason and
// the enforced policies stay as they were.
func (e *Engine) Reload(ctx context.Context) (err error) {
	defer func() { e.afterReload(err) }()
	set, err := policy.LoadDir(e.opts.PolicyDir)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.policyErr = err
		return fmt.Errorf("reload policies from %s: %w", e.opts.PolicyDir, err)
	}
	e.policyErr = nil
	prev := e.policies
	e.policies = set
	if err := e.reconcileLocked(true); err != nil {
		e.policies = prev
		return fmt.Errorf("reload policies from %s: %w", e.opts.PolicyDir, err)
	}
	if err := e.snapshotPolicies(set, filepath.Join(e.opts.StateDir, "policies")); err != nil {
		e.log.Error("save policy snapshot", "err", err)
	}
	return nil
}

// identity is the part of a container that policies select on.
func identity(c api.Container) policy.Identity {
	return policy.Identity{Namespace: c.Namespace, Pod: c.Pod, Labels: c.Labels, Container: c.Name, Image: c.Image}
}

// rulesetKey names the selecting policies by name and content, within the
// whole set: rule IDs are numbered across the set, so any policy change
// gives every ruleset a new key and the maps never hold stale rule IDs.
// Rulesets are immutable in the maps; a new key means a new ruleset.
func rulesetKey(set *policy.Set, ps []*policy.Policy) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + "@" + p.RulesDigest()
	}
	sort.Strings(parts)
	key := set.RulesDigest() + "|" + strings.Join(parts, ",")
	// Rules digests leave modes out: a mode switch keeps the key and is
	// applied in place (syncModesLocked), unless the modes are mixed, where
	// they decide which rules compile in.
	if modes := policy.MixedModes(ps); modes != "" {
		key += "|" + modes
	}
	return key
}

// rulesetFor finds or builds the ruleset that c's policies compile to and
// makes sure it is written in the maps. It returns the key, the ruleset ID
// (0 when no policy selects c) and the policies' names.
func (e *Engine) rulesetFor(c api.Container) (string, uint32, []string, error) {
	ps := e.policies.Select(identity(c))
	if len(ps) == 0 {
		return "", 0, nil, nil
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	// One string per ruleset, not per container: rulesetOf keeps it.
	key := unique.Make(rulesetKey(e.policies, ps)).Value()
	id, _, err := e.reg.RulesetID(key)
	if err != nil {
		return "", 0, nil, err
	}
	if !e.liveRulesets[id] {
		rs, err := e.policies.Compile(id, ps)
		if err != nil {
			return "", 0, nil, fmt.Errorf("compile policies %v: %w", names, err)
		}
		if err := e.enforcer.PutRuleset(rs); err != nil {
			return "", 0, nil, fmt.Errorf("write ruleset %d: %w", id, err)
		}
		e.liveRulesets[id] = true
	}
	return key, id, names, nil
}

// resolveCgroup fills in CgroupID from CgroupPath, which may be an absolute
// directory or a v2 path relative to the cgroup root.
func (e *Engine) resolveCgroup(c *api.Container) error {
	if c.CgroupPath == "" {
		if c.CgroupID == 0 {
			return errors.New("neither cgroupId nor cgroupPath given")
		}
		return e.refuseEngineCgroup(c.CgroupID)
	}
	v2path := filepath.Clean(c.CgroupPath)
	if rel, ok := strings.CutPrefix(v2path, e.cgroups.Root); ok && (rel == "" || rel[0] == '/') {
		v2path = "/" + rel
	}
	v2path, err := cgroup.ContainerPath(v2path, "cgroupPath "+strconv.Quote(c.CgroupPath))
	if err != nil {
		return err
	}
	dir := e.cgroups.Dir(v2path)
	id, err := e.cgroupID(dir)
	if err != nil {
		return fmt.Errorf("unknown cgroup: %w", err)
	}
	if rel, err := filepath.Rel(e.cgroups.Root, dir); err == nil && rel != "." {
		if level := strings.Count(rel, "/") + 1; level >= bpf.MaxCgroupLevel {
			return fmt.Errorf("cgroup %s is at level %d; registered cgroups must be above level %d", dir, level, bpf.MaxCgroupLevel)
		}
	}
	if c.CgroupID != 0 && c.CgroupID != id {
		return fmt.Errorf("cgroup %s has id %d, not the given %d", dir, id, c.CgroupID)
	}
	c.CgroupID = id
	c.CgroupPath = dir
	return e.refuseEngineCgroup(c.CgroupID)
}

// refuseEngineCgroup refuses the engine's own cgroup and its ancestors, the
// root included: rules there would hold the engine and every process beside
// it, and its move control would kill what they start in other cgroups.
// A registrar naming one has mapped a stale pid or a wrong cgroupsPath.
func (e *Engine) refuseEngineCgroup(id uint64) error {
	if path, ok := e.selfCgroups[id]; ok {
		return fmt.Errorf("cgroup %s (id %d) holds the engine itself or is an ancestor of its cgroup; no container lives there", path, id)
	}
	return nil
}

// cgroupMount is the configured cgroup v2 mount, else the detected one.
func cgroupMount(opts Options) (cgroup.Mount, error) {
	if opts.CgroupRoot != "" {
		return cgroup.Mount{Root: opts.CgroupRoot, Mode: "configured"}, nil
	}
	return cgroup.Detect()
}

// engineCgroups maps the IDs of the engine's v2 cgroup and its ancestors to
// their paths; only the root when the engine cannot see its cgroup (a
// cgroup namespace).
func engineCgroups(m cgroup.Mount, cgroupID func(string) (uint64, error)) map[uint64]string {
	own, err := m.PathOfPID(os.Getpid())
	if err != nil {
		// The root is every process's ancestor, seen or not.
		return cgroupAndAncestors(m, "/", cgroupID)
	}
	return cgroupAndAncestors(m, own, cgroupID)
}

// cgroupAndAncestors maps the IDs of a v2 cgroup and its ancestors, the
// root included, to their paths.
func cgroupAndAncestors(m cgroup.Mount, path string, cgroupID func(string) (uint64, error)) map[uint64]string {
	out := map[uint64]string{}
	for p := path; ; p = filepath.Dir(p) {
		if id, err := cgroupID(m.Dir(p)); err == nil {
			out[id] = p
		}
		if p == "/" || p == "." {
			return out
		}
	}
}

// Register implements api.Handler.
func (e *Engine) Register(ctx context.Context, c api.Container) (*api.Container, error) {
	if c.ID == "" {
		e.countRegistration(c.Source, errors.New("no id"))
		return nil, errors.New("register: container has no id")
	}
	if err := e.checkIdentity(ctx, &c); err != nil {
		e.countRegistration(c.Source, err)
		return nil, fmt.Errorf("register container %s: %w", c.ID, err)
	}
	api.EndStep(ctx, "cgroup")
	if c.Source == "" {
		c.Source = "cli"
	}
	pre := e.resolveAhead(ctx, &c)
	api.EndStep(ctx, "rules")
	e.mu.Lock()
	if err := ctx.Err(); err != nil {
		e.unlockAfterFailure(c.ID)
		return nil, fmt.Errorf("register container %s: %w", c.ID, err)
	}
	r, err := e.registerResolvedLocked(c, &pre)
	if err != nil {
		e.unlockAfterFailure(c.ID)
	} else {
		e.mu.Unlock()
	}
	api.EndStep(ctx, "enforce")
	// Logged after the lock, so a log write that blocks (a slow reader of
	// stderr) does not hold up every other registration, and after the
	// answer, which a container's start waits for.
	api.AfterAnswer(ctx, func() { e.logRegistered(r) })
	return r, err
}

// unlockAfterFailure releases the engine lock after a registration of id
// failed. Resolving its rules kept its root, ahead of the lock: unless an
// earlier registration of id stands, that root is dropped.
func (e *Engine) unlockAfterFailure(id string) {
	_, registered := e.reg.Get(id)
	e.mu.Unlock()
	if !registered {
		e.roots.drop(id)
	}
}

// registerLocked records c and puts its policies in force. An error that
// leaves a selected container unenforced wraps api.ErrCannotEnforce, so the
// registrars refuse it even when failing open.
func (e *Engine) registerLocked(c api.Container) (*api.Container, error) {
	r, err := e.registerResolvedLocked(c, nil)
	e.logRegistered(r)
	return r, err
}

// logRegistered logs a registration made (r not nil).
func (e *Engine) logRegistered(r *api.Container) {
	if r != nil {
		e.log.Info("registered", "id", r.ID, "cgroup", r.CgroupID, "namespace", r.Namespace, "pod", r.Pod, "container", r.Name, "policies", r.Policies)
	}
}

// registerResolvedLocked is registerLocked with c's exec rules resolved
// ahead of the lock (pre), used when resolved under the policies in force.
func (e *Engine) registerResolvedLocked(c api.Container, pre *resolvedFiles) (_ *api.Container, err error) {
	defer func() { e.countRegistration(c.Source, err) }()
	key, rulesetID, names, err := e.rulesetFor(c)
	if err != nil {
		return nil, fmt.Errorf("register container %s: %w: %w", c.ID, api.ErrCannotEnforce, err)
	}
	c.Policies = names
	prev, hadPrev := e.reg.Get(c.ID)
	e.sameRootLocked(&c)
	if rulesetID != 0 {
		// Identities first: the file_rules entries wait for the cgroup entry.
		var err error
		if pre != nil && pre.set == e.policies {
			err = e.writeFilesLocked(&c, *pre)
		} else {
			err = e.syncFilesLocked(&c)
		}
		if err != nil {
			e.log.Warn("exec rules hold by path only", "id", c.ID, "err", err)
		}
	}
	// Record intent first: a crash after this point is repaired on restart.
	if err := e.reg.Put(c); err != nil {
		if rulesetID != 0 {
			err = fmt.Errorf("%w: policies %v: %w", api.ErrCannotEnforce, names, err)
		}
		return nil, fmt.Errorf("register container %s: %w", c.ID, err)
	}
	if rulesetID != 0 {
		if err := e.enforcer.SetCgroup(c.CgroupID, rulesetID); err != nil {
			// Nothing was put in force: take the record back so the
			// registry does not claim a container the maps do not hold.
			if hadPrev {
				e.reg.Put(prev)
			} else {
				e.reg.Delete(c.ID)
			}
			return nil, fmt.Errorf("register container %s: %w: policies %v on cgroup %d: %w", c.ID, api.ErrCannotEnforce, names, c.CgroupID, err)
		}
		e.rulesetOf[c.ID] = key
	} else {
		delete(e.rulesetOf, c.ID)
		if err := e.clearCgroupLocked(c.CgroupID, c.ID); err != nil {
			return nil, fmt.Errorf("register container %s: %w", c.ID, err)
		}
	}
	if hadPrev && prev.CgroupID != c.CgroupID {
		if err := e.clearCgroupLocked(prev.CgroupID, c.ID); err != nil {
			e.log.Error("clear previous cgroup", "id", c.ID, "cgroup", prev.CgroupID, "err", err)
		}
	}
	if o, ok := e.orphans[c.CgroupID]; ok {
		delete(e.orphans, c.CgroupID)
		e.log.Info("orphaned cgroup entry re-owned", "cgroup", c.CgroupID, "path", o.Path, "id", c.ID)
		if err := e.dropOrphanRulesetLocked(o); err != nil {
			e.log.Error("drop ruleset of re-owned entry", "cgroup", c.CgroupID, "err", err)
		}
	}
	return &c, nil
}

// clearCgroupLocked removes a cgroup's map entry unless another registered
// container (other than except) still uses that cgroup.
func (e *Engine) clearCgroupLocked(cgroupID uint64, except string) error {
	for _, other := range e.reg.InCgroup(cgroupID) {
		if _, ok := e.rulesetOf[other]; ok && other != except {
			return nil
		}
	}
	if err := e.enforcer.DeleteCgroup(cgroupID); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clear cgroup %d: %w", cgroupID, err)
	}
	if err := e.deleteFilesLocked(cgroupID); err != nil {
		return fmt.Errorf("clear cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// Unregister implements api.Handler.
func (e *Engine) Unregister(ctx context.Context, id string) error {
	_, err := e.unregister(ctx, id)
	return err
}

// unregister removes id's registration and returns it (nil for an
// orphan's cgroup entries), logged once the answer is written.
func (e *Engine) unregister(ctx context.Context, id string) (*api.Container, error) {
	e.mu.Lock()
	c, err := e.unregisterLocked(id)
	e.mu.Unlock()
	api.AfterAnswer(ctx, func() { e.logUnregistered(c) })
	return c, err
}

// logUnregistered logs a registration removed (c not nil).
func (e *Engine) logUnregistered(c *api.Container) {
	if c != nil {
		e.log.Info("unregistered", "id", c.ID, "cgroup", c.CgroupID)
	}
}

// unregisterLocked removes id's registration; the caller logs it.
func (e *Engine) unregisterLocked(id string) (*api.Container, error) {
	c, ok := e.reg.Get(id)
	if !ok {
		if o, isOrphan := e.orphanByID(id); isOrphan {
			return nil, e.removeOrphanLocked(o, "removed by request")
		}
		return nil, fmt.Errorf("unregister %s: %w", id, api.ErrNotFound)
	}
	if err := e.reg.Delete(id); err != nil {
		return nil, fmt.Errorf("unregister %s: %w", id, err)
	}
	delete(e.rulesetOf, id)
	if err := e.clearCgroupLocked(c.CgroupID, id); err != nil {
		return nil, fmt.Errorf("unregister %s: %w", id, err)
	}
	e.gone.add(c)
	e.roots.drop(id)
	// Unused rulesets stay until the next reload or start: the next
	// container of the same kind reuses them, and deleting one walks the maps.
	return &c, nil
}

// Sync implements api.Handler: source's registrations become exactly cs.
func (e *Engine) Sync(ctx context.Context, source string, cs []api.Container) ([]api.Container, error) {
	// A container that exited between the registrar's listing and now has
	// no cgroup any more: skip it rather than fail everyone else's sync.
	live := make([]api.Container, 0, len(cs))
	for i, c := range cs {
		c.Source = source
		if c.ID == "" {
			return nil, fmt.Errorf("sync %s: container %d has no id", source, i)
		}
		if err := e.checkIdentity(ctx, &c); err != nil {
			e.log.Info("sync: skipping container", "source", source, "id", c.ID, "err", err)
			continue
		}
		live = append(live, c)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	keep := map[string]bool{}
	out := make([]api.Container, 0, len(live))
	var errs []error
	for _, c := range live {
		keep[c.ID] = true
		r, err := e.registerLocked(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, *r)
	}
	for _, c := range e.reg.List() {
		if c.Source == source && !keep[c.ID] {
			removed, err := e.unregisterLocked(c.ID)
			if err != nil {
				errs = append(errs, err)
			}
			e.logUnregistered(removed)
		}
	}
	return out, errors.Join(errs...)
}

// List implements api.Handler.
func (e *Engine) List(ctx context.Context) ([]api.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reg.List(), nil
}

// Status implements api.Handler.
func (e *Engine) Status(ctx context.Context) (*api.Status, error) {
	// Counting map entries walks the maps (tens of ms with 10,000
	// cgroups): outside the lock, so registrations do not wait for it.
	usage, err := e.enforcer.MapUsage()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := &api.Status{
		Version:    Version,
		ABI:        bpf.ABI,
		BPFDir:     e.opts.BPFDir,
		StateDir:   e.opts.StateDir,
		CgroupRoot: e.cgroups.Root,
		CgroupMode: e.cgroups.Mode,
		Adopted:    e.enforcer.Adopted(),
		Containers: e.reg.Len(),
		Rulesets:   len(e.liveRulesets),
	}
	for _, c := range e.enforcer.Controls() {
		st.Controls = append(st.Controls, api.Control{Name: c.Name, Mode: c.Mode, Reason: c.Reason})
		if c.Name == bpf.ControlExec {
			st.Uncovered = uncoveredExec(c.Mode)
		}
	}
	pinned, err := e.enforcer.Pinned()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	n, err := e.enforcer.Counters()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st.Counters = api.Counters(n)
	for _, p := range pinned {
		st.Pinned = append(st.Pinned, api.PinnedObject{Path: p.Path, Kind: p.Kind, ID: p.ID})
	}
	for _, p := range e.policies.Policies() {
		st.Policies = append(st.Policies, api.PolicySummary{Name: p.Name, File: p.File, Mode: p.Mode()})
	}
	for _, u := range usage {
		st.Maps = append(st.Maps, api.MapUsage{Name: u.Name, Entries: u.Entries, Capacity: u.Capacity, Requested: u.Requested})
	}
	for _, cg := range slices.Sorted(maps.Keys(e.orphans)) {
		st.Orphans = append(st.Orphans, e.orphans[cg])
	}
	if e.policyErr != nil {
		st.PolicyError = e.policyErr.Error()
		st.PolicyErrors = policyFileErrors(e.policyErr)
	}
	st.CgroupCheck = e.cgroupCheckMode()
	st.FileIdentity = inroot.DeviceSource()
	st.CRI = e.discoverStatusLocked()
	st.NotReady = e.notReadyLocked(len(pinned))
	st.Ready = st.NotReady == ""
	e.observeStatus(st)
	return st, nil
}

// reconcileLocked makes the maps match the registry and policies: rulesets
// first, then cgroup entries, then removal of what nothing references, so
// no registered cgroup is ever without its rules. Exec rules are resolved
// again in every container when resolveAll is set (a reload), else only in
// those whose ruleset changed: at a restart with the same policies the
// pinned identities are the ones the last resolution wrote.
func (e *Engine) reconcileLocked(resolveAll bool) error {
	inMaps, err := e.enforcer.Rulesets()
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	e.liveRulesets = map[uint32]bool{}
	keys := e.reg.RulesetKeys()
	for _, id := range keys {
		if inMaps[id] {
			e.liveRulesets[id] = true // immutable: same key, same content
		}
	}
	cgroups, err := e.enforcer.Cgroups()
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	wanted := map[uint64]bool{}
	modesSynced := map[uint32]bool{}
	var errs []error
	registered := e.reg.List()
	gone := e.cgroupsGone(registered)
	for i, c := range registered {
		if gone[i] {
			// The container went away while nobody watched.
			e.log.Info("dropping registration of vanished cgroup", "id", c.ID, "cgroup", c.CgroupPath)
			if err := e.reg.Delete(c.ID); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		key, rulesetID, names, err := e.rulesetFor(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile container %s: %w", c.ID, err))
			wanted[c.CgroupID] = true // keep whatever it had
			continue
		}
		rootID, rootMountNS, rootNewest := c.RootID, c.RootMountNS, c.RootNewestMount
		if rulesetID != 0 && (resolveAll || !inMaps[rulesetID] || cgroups[c.CgroupID] != rulesetID) {
			// Rule IDs and rules may have changed: resolve again.
			if err := e.syncFilesLocked(&c); err != nil {
				e.log.Warn("exec rules not resolved again", "id", c.ID, "err", err)
			}
		}
		if !slices.Equal(c.Policies, names) || c.RootID != rootID || c.RootMountNS != rootMountNS || c.RootNewestMount != rootNewest {
			c.Policies = names
			if err := e.reg.Put(c); err != nil {
				errs = append(errs, err)
			}
		}
		if rulesetID == 0 {
			delete(e.rulesetOf, c.ID)
			continue
		}
		e.rulesetOf[c.ID] = key
		wanted[c.CgroupID] = true
		if err := e.syncModesLocked(c, rulesetID, modesSynced); err != nil {
			errs = append(errs, fmt.Errorf("reconcile container %s: %w", c.ID, err))
		}
		if cgroups[c.CgroupID] != rulesetID {
			if err := e.enforcer.SetCgroup(c.CgroupID, rulesetID); err != nil {
				errs = append(errs, fmt.Errorf("reconcile container %s: %w", c.ID, err))
			}
		}
	}
	// Entries no registration accounts for (a lost or emptied state dir)
	// keep enforcing while their cgroup exists: losing the record must not
	// set a container free.
	var unowned []uint64
	for cg := range cgroups {
		if !wanted[cg] && len(e.reg.InCgroup(cg)) == 0 {
			unowned = append(unowned, cg)
		}
	}
	live, err := findCgroups(e.cgroups.Root, unowned, e.cgroupID)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	e.orphans = map[uint64]api.Orphan{}
	var maxRuleset uint32
	for cg, rs := range cgroups {
		if wanted[cg] {
			continue
		}
		if path, ok := live[cg]; ok && len(e.reg.InCgroup(cg)) == 0 {
			e.orphans[cg] = api.Orphan{ID: fmt.Sprintf("%s%d", api.OrphanPrefix, cg), CgroupID: cg, Path: path, Ruleset: rs}
			e.liveRulesets[rs] = true
			maxRuleset = max(maxRuleset, rs)
			e.log.Warn("keeping orphaned cgroup entry enforced", "cgroup", cg, "path", path, "ruleset", rs)
			continue
		}
		if err := e.enforcer.DeleteCgroup(cg); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("reconcile: %w", err))
		}
	}
	for id := range inMaps {
		maxRuleset = max(maxRuleset, id)
	}
	// New rulesets must not take the ID of one still in the maps.
	if err := e.reg.ReserveRulesetIDs(maxRuleset); err != nil {
		errs = append(errs, fmt.Errorf("reconcile: %w", err))
	}
	// Orphans keep their file identities as they keep their rulesets.
	keepFiles := maps.Clone(wanted)
	for cg := range e.orphans {
		keepFiles[cg] = true
	}
	if err := e.dropStaleFilesLocked(keepFiles); err != nil {
		errs = append(errs, fmt.Errorf("reconcile: %w", err))
	}
	for id := range inMaps {
		if !e.liveRulesets[id] {
			if err := e.enforcer.DeleteRuleset(id); err != nil {
				errs = append(errs, fmt.Errorf("reconcile: %w", err))
			}
		}
	}
	if err := e.collectRulesetsLocked(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collectRulesetsLocked deletes rulesets no registered container uses.
func (e *Engine) collectRulesetsLocked() error {
	used := map[string]bool{}
	for _, key := range e.rulesetOf {
		used[key] = true
	}
	for _, o := range e.orphans {
		for key, id := range e.reg.RulesetKeys() {
			if id == o.Ruleset {
				used[key] = true
			}
		}
	}
	var errs []error
	for key, id := range e.reg.RulesetKeys() {
		if used[key] {
			continue
		}
		if e.liveRulesets[id] {
			if err := e.enforcer.DeleteRuleset(id); err != nil {
				errs = append(errs, fmt.Errorf("delete unused ruleset %d: %w", id, err))
				continue
			}
			delete(e.liveRulesets, id)
		}
		if err := e.reg.ForgetRuleset(key); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
