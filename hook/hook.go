package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/hook/decisionlog"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
)

// Engine is the part of the engine's API the hook calls; *api.Client
// implements it.
type Engine interface {
	Register(ctx context.Context, c api.Container) (*api.Container, error)
	Unregister(ctx context.Context, id string) error
}

// Hook is one configured hook run.
type Hook struct {
	// Stage is the stage the hook is installed at. A create stage also
	// unregisters when the state says the container has stopped, so one
	// hooks.d entry can list createContainer and poststop.
	Stage  ocihook.Stage
	Config hookconfig.Config // with defaults applied and validated
	// Started is when the run began (zero: when Run is called). A run the
	// fast path handed over began in the hook's own process: the engine's
	// share of the deadline counts from then.
	Started time.Time
	Engine  Engine
	// Forward takes a create run whole (api.OneShot); nil leaves every
	// run to this process, as for an engine older than the hook request.
	Forward Forwarder
	Cgroups CgroupResolver
	// Offline registers without the engine when it cannot be reached (the
	// slow path, fallback.Command); nil leaves that to the fail mode.
	Offline Engine
}

// connector is an Engine that can connect ahead of its first call
// (*api.Client).
type connector interface {
	Connect(ctx context.Context) error
}

// connectAhead starts connecting to the engine while the hook reads the
// state, config.json and cgroup, so the engine accepts and checks the
// connection meanwhile; the engine call waits for it.
func (h *Hook) connectAhead(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	c, ok := h.Engine.(connector)
	// A run forwarded on a connection of its own needs none made ahead.
	if !ok || h.Forward != nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ectx, cancel := h.engineContext(ctx)
		defer cancel()
		c.Connect(ectx) // a failure shows again, with its reason, in the call
	}()
	return done
}

// awaitConnection waits for the connection made ahead, at most until ctx ends.
func (d *Decision) awaitConnection(ctx context.Context) {
	if d.connected == nil {
		return
	}
	// Ready already (or none was made): no wait, so no timer for ctx.
	select {
	case <-d.connected:
		return
	default:
	}
	select {
	case <-d.connected:
	case <-ctx.Done():
	}
}

// Outcomes a decision records (see decisionlog).
const (
	OutcomeRegistered          = decisionlog.OutcomeRegistered
	OutcomeUnregistered        = decisionlog.OutcomeUnregistered
	OutcomeRegisteredOffline   = decisionlog.OutcomeRegisteredOffline
	OutcomeUnregisteredOffline = decisionlog.OutcomeUnregisteredOffline
	OutcomeNotRegistered       = decisionlog.OutcomeNotRegistered
	OutcomeFailOpen            = decisionlog.OutcomeFailOpen
	OutcomeFailClosed          = decisionlog.OutcomeFailClosed
	OutcomeUnregisterErr       = decisionlog.OutcomeUnregisterErr
)

// Decision is what one run did and why; it is logged as one line.
type Decision struct {
	Time      time.Time
	Stage     ocihook.Stage
	Action    string // register or unregister
	Outcome   string
	Reason    string // why a failure was allowed or refused
	Container api.Container
	Cgroup    Cgroup
	Err       error
	Elapsed   time.Duration
	// Steps times each step that ran, in order, so a slow create can be
	// traced to the state read, config.json, the cgroup lookup or the engine.
	Steps []Step

	// connected is closed once the connection made ahead is ready (or failed).
	connected <-chan struct{}
}

// Step is one timed step of a run.
type Step = decisionlog.Step

// timed runs f as the named step and records how long it took.
func (d *Decision) timed(name string, f func() error) error {
	start := time.Now()
	err := f()
	d.Steps = append(d.Steps, Step{Name: name, Elapsed: time.Since(start)})
	return err
}

// ExitCode is the hook process's exit status: non-zero only when failing
// closed, which makes the runtime refuse the container.
func (d *Decision) ExitCode() int {
	if d.Outcome == OutcomeFailClosed {
		return 1
	}
	return 0
}

// Run performs one hook run on the state read from stdin. It returns when
// the work is done or ctx ends, whichever is first; a step still blocked at
// the deadline (a stuck read, an engine that never answers) is abandoned
// and the failure decided by the fail mode.
func (h *Hook) Run(ctx context.Context, stdin io.Reader) *Decision {
	if h.Started.IsZero() {
		h.Started = time.Now()
	}
	start := h.Started
	d := &Decision{Time: start, Stage: h.Stage, Action: "register"}
	if h.Stage == ocihook.StagePoststop {
		d.Action = "unregister"
	}
	d.connected = h.connectAhead(ctx)
	err := h.run(ctx, stdin, d)
	if err != nil && h.Stage == ocihook.StageCreateContainer {
		err = explainUserNamespace(err)
	}
	d.Elapsed = time.Since(start)
	h.decide(d, err)
	return d
}

func (h *Hook) run(ctx context.Context, stdin io.Reader, d *Decision) error {
	var raw []byte
	if err := d.timed("state", func() (err error) {
		raw, err = readState(ctx, stdin)
		return err
	}); err != nil {
		return err
	}
	engineErr := h.forward(ctx, raw, d)
	if engineErr == nil {
		return nil
	}
	// The engine did not take the run: this process does the work, to
	// register through the engine's older request, to register without
	// the engine, or to know the namespace the fail mode decides by.
	st, err := ocihook.ParseState(raw)
	if err != nil {
		return err // what the engine made of it matters no more
	}
	d.Container.ID = st.ID
	if errors.Is(engineErr, api.ErrUnsupported) || engineErr == errNotForwarded {
		engineErr = nil
	}
	return h.runLocally(ctx, st, d, engineErr)
}

// explainUserNamespace says why a createContainer run failed when the hook
// runs in the container's user namespace: its root is an unprivileged host
// uid, which the engine's socket and state dir refuse, so such a container
// can be registered only by a hook at createRuntime, which runs as the
// runtime does.
func explainUserNamespace(err error) error {
	nested, hostUID, uerr := linux.UserNamespaceRoot()
	if uerr != nil || !nested {
		return err
	}
	return fmt.Errorf("%w (the hook runs in the container's user namespace, as host uid %d, which cannot reach the engine or register offline: install it at createRuntime for containers with a user namespace)", err, hostUID)
}

// fileReader is stdin as the runtime gives it: a file descriptor.
type fileReader interface {
	io.Reader
	Fd() uintptr
}

// readState reads the state from stdin within ctx's deadline: a file
// descriptor (a pipe, as runtimes pass the state, or a file) in reads
// bounded by poll(2), another reader in a goroutine abandoned at the
// deadline.
func readState(ctx context.Context, stdin io.Reader) ([]byte, error) {
	const op = "read OCI state"
	read := func(r io.Reader) ([]byte, error) {
		return linux.ReadLimited(r, ocihook.MaxStateSize, "OCI state on stdin")
	}
	deadline, ok := ctx.Deadline()
	if f, isFile := stdin.(fileReader); ok && isFile {
		raw, err := read(linux.PollReader{Fd: int(f.Fd()), Deadline: deadline})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, notDone(op, context.DeadlineExceeded)
		}
		return raw, err
	}
	var raw []byte
	err := within(ctx, op, func() (err error) {
		raw, err = read(stdin)
		return err
	})
	return raw, err
}

// maxHookEnvelope bounds what a hook request adds around the state.
const maxHookEnvelope = 1 << 10

// errNotForwarded: the run was not handed to the engine (no Forward, or a
// state too large for one request).
var errNotForwarded = errors.New("not forwarded")

// Forwarder takes a hook run whole (api.OneShot): the engine, warm, parses
// the state, reads config.json and finds the cgroup, which a hook process
// would each do cold.
type Forwarder interface {
	Hook(ctx context.Context, run api.HookRun) (api.HookAnswer, error)
}

// forward hands the run to the engine. The engine's answer is the
// registered container, or nil when the state says the container stopped
// and the engine unregistered it.
func (h *Hook) forward(ctx context.Context, raw []byte, d *Decision) error {
	f := h.Forward
	// A state too large for one request (runtimes write a few KiB) is read
	// here, as for an engine that cannot take the run.
	if f == nil || len(raw) > api.MaxMessageSize-maxHookEnvelope {
		return errNotForwarded
	}
	var answer api.HookAnswer
	err := d.timed("engine", func() (err error) {
		ectx, cancel := h.engineContext(ctx)
		defer cancel()
		d.awaitConnection(ectx)
		answer, err = f.Hook(ectx, api.HookRun{Stage: string(h.Stage), State: raw})
		return err
	})
	d.Steps = append(d.Steps, decisionlog.EngineSteps(answer.Steps)...)
	reg := answer.Registered
	err = h.explainDeadline(ctx, err)
	switch {
	case err == nil && reg != nil:
		d.Container = api.Container{ID: reg.ID, Namespace: reg.Namespace, Pod: reg.Pod, Name: reg.Name, Policies: reg.Policies}
		d.Cgroup = Cgroup{ID: reg.CgroupID, Path: reg.CgroupPath, From: "engine"}
		d.Outcome = OutcomeRegistered
		return nil
	case err == nil || errors.Is(err, api.ErrNotFound):
		d.Action, d.Outcome = "unregister", OutcomeUnregistered
		if err != nil {
			d.Outcome = OutcomeNotRegistered
		}
		if st, perr := ocihook.ParseState(raw); perr == nil {
			d.Container.ID = st.ID
			if ctr, ierr := ocihook.Identity(st.ID, st.Annotations); ierr == nil {
				d.Container = ctr
			}
		}
		return nil
	}
	return err
}

// runLocally is a run this process does itself. engineErr is the engine's
// failure to take the forwarded run, if it was forwarded: an unreachable
// engine sends the registration to the slow path at once, a refusal is the
// run's outcome once the identity (and so the fail mode) is known.
func (h *Hook) runLocally(ctx context.Context, st *specs.State, d *Decision, engineErr error) error {
	if h.Stage == ocihook.StagePoststop || st.Status == specs.StateStopped {
		d.Action = "unregister"
		return h.unregister(ctx, st, d, engineErr)
	}
	if err := ocihook.CheckCreateState(st, h.Stage); err != nil {
		return err
	}

	var cfg *ocihook.BundleConfig
	if err := d.timed("config", func() error {
		return within(ctx, "read bundle config of "+st.ID, func() (err error) {
			cfg, err = ocihook.ReadBundleConfig(st.Bundle)
			return err
		})
	}); err != nil {
		return err
	}
	ctr, err := ocihook.Registration(h.Stage, st, cfg)
	d.Container = ctr // the namespace decides the fail mode, even on error
	if err != nil {
		return errors.Join(engineErr, err)
	}
	if engineErr != nil && !fallback.Unreachable(engineErr) {
		return engineErr
	}
	var cg Cgroup
	if err := d.timed("cgroup", func() error {
		return within(ctx, "resolve cgroup of "+st.ID, func() (err error) {
			cg, err = h.Cgroups.Resolve(h.Stage, st.Pid, cfg.CgroupsPath())
			return err
		})
	}); err != nil {
		return fmt.Errorf("resolve cgroup of container %s: %w", st.ID, err)
	}
	d.Cgroup = cg
	ctr.CgroupID = cg.ID
	ctr.CgroupPath = cg.Path
	stored, err := h.register(ctx, ctr, d, engineErr)
	if err != nil {
		return err
	}
	if stored != nil {
		d.Container.Policies = stored.Policies
	}
	d.Container.CgroupID = cg.ID
	d.Container.CgroupPath = cg.Path
	if d.Outcome == "" {
		d.Outcome = OutcomeRegistered
	}
	return nil
}

// register asks the engine and, when it cannot be reached, registers the
// container offline in what is left of the deadline.
func (h *Hook) register(ctx context.Context, ctr api.Container, d *Decision, engineErr error) (*api.Container, error) {
	var stored *api.Container
	err := engineErr
	if err == nil {
		err = d.timed("engine", func() (err error) {
			ectx, cancel := h.engineContext(ctx)
			defer cancel()
			d.awaitConnection(ectx)
			stored, err = h.Engine.Register(ectx, ctr)
			return err
		})
		err = h.explainDeadline(ctx, err)
	}
	if err == nil || h.Offline == nil || !fallback.Unreachable(err) || ctx.Err() != nil {
		return stored, err
	}
	if oerr := d.timed("offline", func() (err error) {
		stored, err = h.Offline.Register(ctx, ctr)
		return err
	}); oerr != nil {
		return nil, fmt.Errorf("%w; registering without it: %w", err, oerr)
	}
	d.Outcome = OutcomeRegisteredOffline
	d.Reason = "engine unreachable: " + err.Error()
	return stored, nil
}

// engineContext is the part of the run's deadline the engine gets when a
// slow path can follow.
func (h *Hook) engineContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if h.Offline == nil || h.Config.EngineTimeout <= 0 {
		return ctx, func() {}
	}
	return shorter(ctx, h.Started.Add(time.Duration(h.Config.EngineTimeout)))
}

func (h *Hook) unregister(ctx context.Context, st *specs.State, d *Decision, engineErr error) error {
	if ctr, err := ocihook.Identity(st.ID, st.Annotations); err == nil {
		d.Container = ctr
	}
	err := engineErr
	if err == nil {
		err = d.timed("engine", func() error {
			ectx, cancel := h.engineContext(ctx)
			defer cancel()
			d.awaitConnection(ectx)
			return h.Engine.Unregister(ectx, st.ID)
		})
		err = h.explainDeadline(ctx, err)
	}
	offline := false
	if h.Offline != nil && fallback.Unreachable(err) && ctx.Err() == nil {
		unreachable := err
		err = d.timed("offline", func() error { return h.Offline.Unregister(ctx, st.ID) })
		if err != nil && !errors.Is(err, api.ErrNotFound) {
			err = fmt.Errorf("%w; unregistering without it: %w", unreachable, err)
		}
		offline = true
		d.Reason = "engine unreachable: " + unreachable.Error()
	}
	switch {
	case err == nil && offline:
		d.Outcome = OutcomeUnregisteredOffline
	case err == nil:
		d.Outcome = OutcomeUnregistered
	case errors.Is(err, api.ErrNotFound):
		d.Outcome = OutcomeNotRegistered
	default:
		return err
	}
	return nil
}

// explainDeadline says so when an engine call failed because the run's
// deadline passed: the socket's own timeout can fire a moment before the
// context records it, leaving only "i/o timeout" in err.
func (h *Hook) explainDeadline(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	timedOut := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
	share := h.engineShare()
	if ctx.Err() != nil || timedOut && share >= time.Duration(h.Config.Timeout) {
		return fmt.Errorf("no answer from the engine before the hook's %v deadline: %w", time.Duration(h.Config.Timeout), err)
	}
	if timedOut {
		return fmt.Errorf("no answer from the engine within %v (its share of the hook's %v deadline): %w", share, time.Duration(h.Config.Timeout), err)
	}
	return err
}

// engineShare is how long the engine gets to answer.
func (h *Hook) engineShare() time.Duration {
	if h.Offline == nil || h.Config.EngineTimeout <= 0 {
		return time.Duration(h.Config.Timeout)
	}
	return time.Duration(h.Config.EngineTimeout)
}

// decide sets the outcome of a failed run.
func (h *Hook) decide(d *Decision, err error) {
	if err == nil {
		return
	}
	d.Err = err
	if d.Action == "unregister" {
		// The container is gone whatever the hook says; a non-zero exit
		// would only make the runtime's delete fail after the fact.
		d.Outcome = OutcomeUnregisterErr
		d.Reason = "poststop cannot refuse a container"
		return
	}
	open, why := h.Config.Settings.Decide(d.Container.Namespace, errors.Is(err, api.ErrCannotEnforce))
	d.Reason = why
	if open {
		d.Outcome = OutcomeFailOpen
	} else {
		d.Outcome = OutcomeFailClosed
	}
}

// within runs f and returns its error, or ctx's once ctx ends first. f is
// left running then; its results must not be read.
func within(ctx context.Context, op string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return notDone(op, context.Cause(ctx))
	}
}

// notDone is the error of a step the run's deadline cut short.
func notDone(op string, cause error) error {
	return fmt.Errorf("%s: not done before the hook's deadline: %w", op, cause)
}
