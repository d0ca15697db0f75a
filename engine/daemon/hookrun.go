package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
)

var _ api.HookHandler = (*Engine)(nil)

// Hook registers the container of an OCI hook run, doing in the engine
// what a hook process would otherwise do cold on every container start: it
// parses the state, reads the bundle's config.json through the hook's own
// root (the runtime's view of the bundle path), takes the identity from the
// annotations and the cgroup from the kernel — the hook's own at
// createContainer, the container process's at createRuntime. At poststop,
// or for a container the state says has stopped, it unregisters.
func (e *Engine) Hook(ctx context.Context, run api.HookRun) (api.HookResult, error) {
	c, removed, err := e.hook(ctx, run)
	return api.HookResult{Registered: c, Removed: removed}, err
}

func (e *Engine) hook(ctx context.Context, run api.HookRun) (registered, removed *api.Container, _ error) {
	stage, err := ocihook.ParseStage(run.Stage)
	if err != nil {
		return nil, nil, fmt.Errorf("hook run: %w", err)
	}
	st, err := ocihook.ParseState(run.State)
	if err != nil {
		return nil, nil, fmt.Errorf("hook run at %s: %w", stage, err)
	}
	if stage == ocihook.StagePoststop || st.Status == specs.StateStopped {
		removed, err := e.unregister(ctx, st.ID)
		api.EndStep(ctx, "unregister")
		return nil, removed, err
	}
	if err := ocihook.CheckCreateState(st, stage); err != nil {
		return nil, nil, err
	}
	peer, havePeer := api.PeerPID(ctx)
	bundle := st.Bundle
	if havePeer {
		bundle = filepath.Join("/proc", strconv.Itoa(peer), "root", st.Bundle)
	}
	cfg, err := ocihook.ReadBundleConfig(bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", st.ID, err)
	}
	ctr, err := ocihook.Registration(stage, st, cfg)
	if err != nil {
		return nil, nil, err
	}
	if e.cgroups.Namespaced {
		// Other processes' cgroup paths are hidden from an engine in a
		// cgroup namespace: config.json's cgroupsPath names the cgroup.
		witness := ctr.Pid
		if ctr.PeerInContainer {
			witness = peer
		}
		cg, err := e.cgroups.Locate(fmt.Sprintf("/proc/%d/cgroup", witness), cfg.CgroupsPath())
		if err != nil {
			return nil, nil, fmt.Errorf("resolve cgroup of container %s: %w", st.ID, err)
		}
		ctr.CgroupID, ctr.CgroupPath = cg.ID, cg.Path
	}
	api.EndStep(ctx, "config")
	c, err := e.Register(ctx, ctr)
	return c, nil, err
}
