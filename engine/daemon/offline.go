package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/policy"
	"github.com/holdfast-dev/holdfast/engine/registry"
)

// OfflineLockHolder is how a registrar writing the state while no engine
// runs names itself in the state-dir lock.
const OfflineLockHolder = "register-offline"

// offlineHolderWait bounds how long a starting engine waits for a registrar
// that holds the state-dir lock (it holds it for milliseconds).
const offlineHolderWait = 5 * time.Second

// RegisterOffline registers c the way a running engine would, while none
// runs: a registrar that cannot reach the engine's socket calls it (through
// `holdfast register-offline`) so the container is enforced from its first
// instruction anyway. It takes the engine's state-dir lock (waiting until
// ctx ends: an engine that holds it but does not answer keeps it), selects
// policies from the engine's last good policy snapshot, compiles and writes
// a ruleset the maps lack, points the cgroup at it in the pinned maps, and
// records the registration in the registry. The engine adopts it when it
// starts, and re-evaluates it against the policies it then has.
func RegisterOffline(ctx context.Context, opts Options, c api.Container) (*api.Container, error) {
	if c.ID == "" {
		return nil, errors.New("register offline: container has no id")
	}
	e, err := openOffline(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("register container %s offline: %w", c.ID, err)
	}
	defer e.Close()
	// Holding the lock, finish what was started whatever the deadline.
	ctx = context.WithoutCancel(ctx)
	if c.PeerInContainer {
		// The registrar runs in the container and this process is its
		// child: it is the witness of the cgroup claim the peer would be.
		ctx = api.WithPeerPID(ctx, procSelf())
	}
	return e.Register(ctx, c)
}

// UnregisterOffline removes a registration while no engine runs (a
// container deleted meanwhile): the cgroup's map entries go at once and
// the registry records the removal for the engine. The error wraps
// api.ErrNotFound for an unknown id.
func UnregisterOffline(ctx context.Context, opts Options, id string) error {
	e, err := openOffline(ctx, opts)
	if err != nil {
		return fmt.Errorf("unregister container %s offline: %w", id, err)
	}
	defer e.Close()
	return e.Unregister(ctx, id)
}

// openOffline builds an Engine over the state an engine left: its lock,
// registry, policy snapshot and pinned maps. It loads no program and runs
// no reconcile; the next engine start does that.
func openOffline(ctx context.Context, opts Options) (*Engine, error) {
	e := newEngine(opts)
	// The state dir is the engine's to create: without it no engine ever
	// ran here and there are no policies to apply.
	if _, err := os.Stat(opts.StateDir); err != nil {
		return nil, fmt.Errorf("engine state dir: %w", err)
	}
	lock, err := linux.LockFileWait(ctx, filepath.Join(opts.StateDir, LockFile), OfflineLockHolder)
	if err != nil {
		return nil, fmt.Errorf("take the engine's state-dir lock: %w", err)
	}
	e.lock = lock
	ok := false
	defer func() {
		if !ok {
			e.closeOffline()
		}
	}()
	if e.cgroups, err = cgroupMount(opts); err != nil {
		return nil, err
	}
	// The cgroups above this process are refused as the engine's are; its
	// own may be the container's (a hook run in the container's cgroup).
	e.selfCgroups = cgroupAndAncestors(e.cgroups, "/", e.cgroupID)
	if own, err := e.cgroups.PathOfPID(procSelf()); err == nil && own != "/" {
		e.selfCgroups = cgroupAndAncestors(e.cgroups, filepath.Dir(own), e.cgroupID)
	}
	// The snapshot is the set the engine last enforced (its policy dir may
	// hold edits it has not accepted).
	snapshot := filepath.Join(opts.StateDir, "policies")
	if e.policies, err = policy.LoadDir(snapshot); err != nil {
		return nil, fmt.Errorf("engine policy snapshot: %w", err)
	}
	reg, err := registry.Open(filepath.Join(opts.StateDir, "registry"))
	if reg == nil {
		return nil, err
	}
	e.reg = reg
	if err != nil {
		e.log.Error("registry entries skipped", "err", err)
	}
	if e.enforcer, err = e.openEnforcerMaps(bpf.Layout{Root: opts.BPFDir}); err != nil {
		return nil, err
	}
	inMaps, err := e.enforcer.Rulesets()
	if err != nil {
		return nil, err
	}
	for _, id := range reg.RulesetKeys() {
		if inMaps[id] {
			e.liveRulesets[id] = true
		}
	}
	// Which registrations hold their cgroup's entry, so removing one keeps
	// an entry another container of the same cgroup uses.
	for _, c := range reg.List() {
		if len(c.Policies) > 0 {
			e.rulesetOf[c.ID] = rulesetKey(e.policies, e.policies.Select(identity(c)))
		}
	}
	ok = true
	return e, nil
}

func (e *Engine) closeOffline() {
	if e.enforcer != nil {
		e.enforcer.Close()
	}
	if e.reg != nil {
		e.reg.Close()
	}
	e.lock.Close()
}

// procSelf is this process's pid as /proc names it: a hook's child runs in
// the container's pid namespace while /proc is still the host's.
func procSelf() int {
	if link, err := os.Readlink("/proc/self"); err == nil {
		if pid, err := strconv.Atoi(link); err == nil {
			return pid
		}
	}
	return os.Getpid()
}

// lockStateDir takes the state-dir lock for an engine. A registrar
// registering a container offline holds it for milliseconds: the engine
// waits for it. Any other holder (another engine, an uninstall) is
// refused at once.
func lockStateDir(ctx context.Context, path string) (*os.File, error) {
	deadline := time.Now().Add(offlineHolderWait)
	for {
		f, err := linux.LockFile(path)
		if err == nil || !errors.Is(err, linux.ErrLocked) || time.Now().After(deadline) {
			return f, err
		}
		// Empty while the holder is writing its record.
		if holder := linux.LockHolder(path); holder != "" && !strings.HasSuffix(holder, " "+OfflineLockHolder) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(5 * time.Millisecond):
		}
	}
}
