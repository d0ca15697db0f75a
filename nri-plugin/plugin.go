// Package nriplugin is holdfast's containerd NRI plugin: it registers each
// container with the engine while the container's task exists but before its
// process runs, unregisters it when it stops, and reconciles the engine's
// "nri" registrations with the runtime's view on every (re)connection.
//
// The holdfast-nri binary, nri-plugin/install and the holdfast command
// import it. It imports only engine/api (and its subpackages) and bpf/cgroup.
package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	nri "github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"sigs.k8s.io/yaml"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// Source names the plugin's registrations in the engine.
const Source = "nri"

// Name is the plugin name registered with NRI; with the index it forms the
// pre-registered file name NN-holdfast.
const Name = "holdfast"

// imageAnnotation is where containerd's CRI records the image name for
// runtimes whose NRI version has no Container.Image.
const imageAnnotation = "io.kubernetes.cri.image-name"

// The events the plugin handles; the stub subscribes to exactly these.
var (
	_ stub.ConfigureInterface       = (*Plugin)(nil)
	_ stub.SynchronizeInterface     = (*Plugin)(nil)
	_ stub.StartContainerInterface  = (*Plugin)(nil)
	_ stub.StopContainerInterface   = (*Plugin)(nil)
	_ stub.RemoveContainerInterface = (*Plugin)(nil)
)

// Engine is the part of the engine's control API the plugin uses;
// *api.Client implements it.
type Engine interface {
	Register(ctx context.Context, c api.Container) (*api.Container, error)
	Unregister(ctx context.Context, id string) error
	Sync(ctx context.Context, source string, cs []api.Container) ([]api.Container, error)
}

// Offline registers containers without the engine while it cannot be
// reached; fallback.Command implements it.
type Offline interface {
	Register(ctx context.Context, c api.Container) (*api.Container, error)
	Unregister(ctx context.Context, id string) error
}

// DefaultEngineSocket is where `holdfast engine` listens unless told otherwise.
const DefaultEngineSocket = api.DefaultSocket

// Config is the plugin configuration containerd hands over in Configure
// (the pre-registered plugin's file in plugin_config_path). Empty fields
// keep the plugin's current setting. The names match the OCI hook's.
type Config struct {
	EngineSocket string `json:"engineSocket,omitempty"`
	registrar.Settings
}

// ParseConfig reads a YAML or JSON plugin configuration.
func ParseConfig(data string) (Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict([]byte(data), &c); err != nil {
		return Config{}, fmt.Errorf("parse holdfast nri plugin config: %w", err)
	}
	// An empty failMode keeps the current mode; Validate accepts it.
	if err := c.Settings.Validate(); err != nil {
		return Config{}, fmt.Errorf("parse holdfast nri plugin config: %w", err)
	}
	if c.EngineSocket != "" && !strings.HasPrefix(c.EngineSocket, "/") {
		return Config{}, fmt.Errorf("parse holdfast nri plugin config: engineSocket %q is not an absolute path", c.EngineSocket)
	}
	return c, nil
}

// Plugin handles NRI events. Set the exported fields before first use.
type Plugin struct {
	Engine Engine
	// Settings decide whether a container the engine cannot register
	// starts; a fail-open one starts unenforced and is registered by the
	// resync loop once the engine answers.
	Settings registrar.Settings
	Cgroups  cgroup.Mount
	Log      *slog.Logger // nil discards
	// RequestTimeout is the runtime's NRI request timeout; every answer
	// comes well inside it. Configure updates it from the runtime.
	RequestTimeout time.Duration
	// Locked lists settings given on the command line, which the runtime's
	// plugin configuration must not override (Config's JSON names).
	Locked map[string]bool
	// Offline is the slow path for an engine that cannot be reached: the
	// plugin registers the container itself in the rest of the request's
	// budget, after giving the engine half of it. Nil leaves that case to
	// the fail policy.
	Offline Offline

	mu      sync.Mutex
	timeout func() time.Duration // the connected stub's request timeout
	// known is what the runtime runs, as the engine should have it.
	known map[string]api.Container
	// stale means the engine may disagree with known; a resync is due.
	stale bool
	kick  chan struct{}
	// engineSlot serialises engine writes so a resync's snapshot cannot
	// overtake a registration made after it.
	engineSlot chan struct{}
	initOnce   sync.Once
}

func (p *Plugin) init() {
	p.initOnce.Do(func() {
		p.known = map[string]api.Container{}
		p.kick = make(chan struct{}, 1)
		p.engineSlot = make(chan struct{}, 1)
	})
}

func (p *Plugin) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (p *Plugin) settings() (Engine, registrar.FailMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Engine, p.Settings.FailMode
}

// failsOpen says whether a container of namespace whose registration
// failed with err may start unregistered, and why.
func (p *Plugin) failsOpen(namespace string, err error) (bool, string) {
	p.mu.Lock()
	policy := p.Settings
	p.mu.Unlock()
	return policy.Decide(namespace, errors.Is(err, api.ErrCannotEnforce))
}

// Configure applies the runtime's plugin configuration.
func (p *Plugin) Configure(_ context.Context, config, runtime, version string) (stub.EventMask, error) {
	p.init()
	p.log().Info("connected to runtime", "runtime", runtime, "version", version)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timeout != nil {
		if t := p.timeout(); t > 0 {
			p.RequestTimeout = t
		}
	}
	if strings.TrimSpace(config) == "" {
		return 0, nil
	}
	c, err := ParseConfig(config)
	if err != nil {
		return 0, err
	}
	if c.EngineSocket != "" && !p.Locked["engineSocket"] {
		// The old client may hold an idle connection to the engine.
		if old, ok := p.Engine.(io.Closer); ok {
			old.Close()
		}
		p.Engine = &api.Client{Socket: c.EngineSocket}
	}
	if c.FailMode != "" && !p.Locked["failMode"] {
		p.Settings.FailMode = c.FailMode
	}
	if c.FailOpenNamespaces != nil && !p.Locked["failOpenNamespaces"] {
		p.Settings.FailOpenNamespaces = c.FailOpenNamespaces
	}
	if c.EngineNamespace != "" && !p.Locked["engineNamespace"] {
		p.Settings.EngineNamespace = c.EngineNamespace
	}
	p.log().Info("configured", "engineSocket", c.EngineSocket, "failMode", p.Settings.FailMode,
		"failOpenNamespaces", p.Settings.FailOpenNamespaces, "engineNamespace", p.Settings.EngineNamespace)
	return 0, nil
}

// budget bounds one engine call so the answer reaches the runtime before its
// request timeout: past it, NRI drops the plugin and lets the request
// proceed, which would turn fail-closed into fail-open.
func (p *Plugin) budget(ctx context.Context) (context.Context, context.CancelFunc) {
	p.mu.Lock()
	timeout := p.RequestTimeout
	p.mu.Unlock()
	if timeout <= 0 {
		timeout = nri.DefaultPluginRequestTimeout
	}
	d := timeout * 3 / 4
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) * 3 / 4; left < d {
			d = left
		}
	}
	return context.WithTimeout(ctx, d)
}

// acquire takes the engine slot or gives up when ctx ends.
func (p *Plugin) acquire(ctx context.Context) error {
	select {
	case p.engineSlot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for pending engine call: %w", ctx.Err())
	}
}

func (p *Plugin) release() { <-p.engineSlot }

// markStale records that the engine may be out of date and wakes the resync loop.
func (p *Plugin) markStale() {
	p.mu.Lock()
	p.stale = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// StartContainer registers the container before its process starts.
func (p *Plugin) StartContainer(ctx context.Context, pod *nri.PodSandbox, ctr *nri.Container) error {
	p.init()
	start := time.Now()
	ctx, cancel := p.budget(ctx)
	defer cancel()
	engine, _ := p.settings()
	c, err := p.Describe(pod, ctr)
	if err != nil {
		return p.failStart(pod, ctr, err)
	}
	// The engine gets its share of the budget, the wait for a pending
	// engine call (a resync stuck on a hung engine) included.
	ectx, cancel := p.engineShare(ctx)
	defer cancel()
	var reg *api.Container
	if err = p.acquire(ectx); err == nil {
		// Held until c is remembered, so a resync cannot send a list without it.
		defer p.release()
		reg, err = engine.Register(ectx, c)
	}
	offline := false
	if p.Offline != nil && fallback.Unreachable(err) && ctx.Err() == nil {
		reg, err = p.registerOffline(ctx, c, err)
		offline = err == nil
	}
	if err != nil {
		if open, _ := p.failsOpen(pod.GetNamespace(), err); open {
			// The container runs anyway; the resync loop registers it once
			// the engine answers.
			p.remember(c)
			p.markStale()
		}
		return p.failStart(pod, ctr, err)
	}
	p.remember(c)
	if offline {
		// Registered outside the engine slot: a resync once the engine is
		// back makes sure no list sent meanwhile left c out.
		p.markStale()
	}
	p.log().Info("registered", "id", c.ID, "namespace", c.Namespace, "pod", c.Pod,
		"container", c.Name, "cgroupId", c.CgroupID, "policies", reg.Policies, "took", time.Since(start))
	return nil
}

// registerOffline registers c without the engine, which failed with
// engineErr, in the time left.
func (p *Plugin) registerOffline(ctx context.Context, c api.Container, engineErr error) (*api.Container, error) {
	reg, err := p.Offline.Register(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("%w; registering without it: %w", engineErr, err)
	}
	p.log().Warn("engine unreachable; registered the container offline for the engine to adopt", "id", c.ID, "err", engineErr)
	return reg, nil
}

// engineShare is the part of ctx the engine gets when a slow path can
// follow: half of what is left.
func (p *Plugin) engineShare(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if p.Offline == nil || !ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(dl)/2)
}

func (p *Plugin) failStart(pod *nri.PodSandbox, ctr *nri.Container, err error) error {
	open, why := p.failsOpen(pod.GetNamespace(), err)
	if !open {
		p.log().Error("refusing container start", "id", ctr.GetId(), "err", err)
		return fmt.Errorf("holdfast: refusing to start container %s (%s) unenforced, %s: %w",
			ctr.GetName(), ctr.GetId(), why, err)
	}
	p.log().Warn("container starts unenforced", "id", ctr.GetId(), "reason", why, "err", err)
	return nil
}

// StopContainer unregisters the container; a failure never blocks the runtime.
func (p *Plugin) StopContainer(ctx context.Context, _ *nri.PodSandbox, ctr *nri.Container) ([]*nri.ContainerUpdate, error) {
	p.init()
	p.unregister(ctx, ctr.GetId())
	return nil, nil
}

// RemoveContainer unregisters the container if StopContainer did not.
func (p *Plugin) RemoveContainer(ctx context.Context, _ *nri.PodSandbox, ctr *nri.Container) error {
	p.init()
	p.mu.Lock()
	_, known := p.known[ctr.GetId()]
	p.mu.Unlock()
	if known {
		p.unregister(ctx, ctr.GetId())
	}
	return nil
}

func (p *Plugin) unregister(ctx context.Context, id string) {
	ctx, cancel := p.budget(ctx)
	defer cancel()
	p.forget(id)
	engine, _ := p.settings()
	ectx, cancel := p.engineShare(ctx)
	err := p.acquire(ectx)
	if err == nil {
		err = engine.Unregister(ectx, id)
		p.release()
	}
	cancel()
	if p.Offline != nil && fallback.Unreachable(err) && ctx.Err() == nil {
		if err = p.Offline.Unregister(ctx, id); err == nil {
			p.log().Warn("engine unreachable; recorded the removal offline", "id", id)
		}
	}
	switch {
	case err == nil:
		p.log().Info("unregistered", "id", id)
	case errors.Is(err, api.ErrNotFound):
	default:
		p.log().Warn("unregister failed; will resync", "id", id, "err", err)
		p.markStale()
	}
}

// Synchronize makes the engine's "nri" registrations exactly the runtime's
// live containers. It never fails the connection: a plugin the runtime
// refused could not refuse containers later. Failures leave a resync pending.
func (p *Plugin) Synchronize(ctx context.Context, pods []*nri.PodSandbox, ctrs []*nri.Container) ([]*nri.ContainerUpdate, error) {
	p.init()
	podByID := make(map[string]*nri.PodSandbox, len(pods))
	for _, pod := range pods {
		podByID[pod.GetId()] = pod
	}
	live := map[string]api.Container{}
	for _, ctr := range ctrs {
		switch ctr.GetState() {
		case nri.ContainerState_CONTAINER_RUNNING, nri.ContainerState_CONTAINER_PAUSED:
		case nri.ContainerState_CONTAINER_CREATED:
			// Created but not started: StartContainer registers it, unless
			// its task already exists and the event was missed.
			if ctr.GetPid() == 0 {
				continue
			}
		default:
			continue
		}
		c, err := p.Describe(podByID[ctr.GetPodSandboxId()], ctr)
		if err != nil {
			p.log().Warn("skipping container in synchronize", "id", ctr.GetId(), "err", err)
			continue
		}
		live[c.ID] = c
	}
	p.mu.Lock()
	p.known = live
	p.mu.Unlock()
	p.log().Info("synchronize", "pods", len(pods), "containers", len(ctrs), "registering", len(live))

	ctx, cancel := p.budget(ctx)
	defer cancel()
	if err := p.syncKnown(ctx); err != nil {
		p.log().Warn("synchronize with engine failed; will retry", "err", err)
		p.markStale()
	}
	return nil, nil
}

// syncKnown sends the known set to the engine and clears the stale flag.
func (p *Plugin) syncKnown(ctx context.Context) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	engine, _ := p.settings()
	p.mu.Lock()
	list := make([]api.Container, 0, len(p.known))
	for _, c := range p.known {
		list = append(list, c)
	}
	p.mu.Unlock()
	if _, err := engine.Sync(ctx, Source, list); err != nil {
		return err
	}
	p.mu.Lock()
	p.stale = false
	p.mu.Unlock()
	return nil
}

// resyncTimeout bounds one background resync.
const resyncTimeout = 30 * time.Second

// Resync retries a pending sync with backoff until ctx ends. Run starts it.
func (p *Plugin) Resync(ctx context.Context) {
	p.init()
	const maxDelay = 5 * time.Second
	delay := 200 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-p.kick:
		case <-timer.C:
		}
		p.mu.Lock()
		stale := p.stale
		p.mu.Unlock()
		if !stale {
			delay = 200 * time.Millisecond
			continue
		}
		// Off the runtime's request path: a node's worth of containers may
		// take the engine longer than one NRI request allows.
		callCtx, cancel := context.WithTimeout(ctx, resyncTimeout)
		err := p.syncKnown(callCtx)
		cancel()
		if err == nil {
			p.log().Info("resynchronized with engine")
			delay = 200 * time.Millisecond
			continue
		}
		p.log().Debug("resync failed", "err", err, "retry", delay)
		timer.Reset(delay)
		delay = min(delay*2, maxDelay)
	}
}

func (p *Plugin) remember(c api.Container) {
	p.mu.Lock()
	p.known[c.ID] = c
	p.mu.Unlock()
}

func (p *Plugin) forget(id string) {
	p.mu.Lock()
	delete(p.known, id)
	p.mu.Unlock()
}

// Describe turns an NRI pod and container into the engine's view of it.
func (p *Plugin) Describe(pod *nri.PodSandbox, ctr *nri.Container) (api.Container, error) {
	if ctr.GetId() == "" {
		return api.Container{}, errors.New("describe container: runtime sent no container id")
	}
	path, id, err := p.cgroupOf(ctr)
	if err != nil {
		return api.Container{}, fmt.Errorf("describe container %s: %w", ctr.GetId(), err)
	}
	image := ctr.GetImage().GetName()
	if image == "" {
		image = ctr.GetAnnotations()[imageAnnotation]
	}
	return api.Container{
		ID:         ctr.GetId(),
		CgroupID:   id,
		CgroupPath: path,
		Namespace:  pod.GetNamespace(),
		Pod:        pod.GetName(),
		PodUID:     pod.GetUid(),
		Labels:     maps.Clone(pod.GetLabels()),
		Name:       ctr.GetName(),
		Image:      image,
		Source:     Source,
		// At StartContainer the process has pivoted: its root is the container's.
		Pid:        int(ctr.GetPid()),
		Entrypoint: ctr.GetArgs(),
	}, nil
}

// cgroupOf finds the container's cgroup: from its process when the task
// exists, else from the OCI spec's cgroupsPath.
func (p *Plugin) cgroupOf(ctr *nri.Container) (string, uint64, error) {
	path, id, err := p.Cgroups.Find(int(ctr.GetPid()), ctr.GetLinux().GetCgroupsPath())
	if err != nil {
		return "", 0, fmt.Errorf("find cgroup: %w", err)
	}
	return path, id, nil
}
