// Package fastpath is holdfast-oci-hook's own process: the path every
// container create and delete takes. It reads the hook's config and the
// OCI state, hands the run whole to the engine (package oneshot) and logs
// the engine's decision. Whatever else a run needs (an engine that is
// down, hung or refusing, a state the engine cannot take) goes whole to
// the full hook, package hook in the holdfast binary ("holdfast oci-hook"),
// which this process becomes by exec, with the state it read on its stdin.
//
// Of this module it imports only leaf packages (bpf/linux, jsonscan,
// oneshot, registrar, hookconfig, decisionlog): the hook's process links
// neither package net, nor the protocol's client, nor the OCI spec types,
// whose initialisation every container start would pay for.
package fastpath

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/decisionlog"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
)

// The full hook's command line in the holdfast binary:
//
//	holdfast oci-hook --elapsed-ns N -- HOOK-ARGS...
//
// N is how long the run had taken when it was handed over, measured on the
// monotonic clock: the full hook's deadline and the engine's share of it
// count from the run's start, whatever the wall clock does meanwhile.
const (
	HandoffCommand = "oci-hook"
	ElapsedFlag    = "--elapsed-ns"
)

// exitUsage is the status for a broken command line or config file (the
// full hook's too).
const exitUsage = 2

// maxEnvelope bounds what a hook request adds around the state.
const maxEnvelope = 1 << 10

// Run is one hook run's fast path, begun at start. When the engine took
// the run (registered the container, or unregistered it), or the command
// line or config is broken, Run logs what happened and returns the exit
// status and nil. Otherwise it returns a Handoff for the full hook.
func Run(start time.Time, args []string, stdin *os.File, stderr io.Writer) (int, *Handoff) {
	stage, cfg, file, err := hookconfig.FromArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		fmt.Fprintf(stderr, "holdfast-oci-hook: %s\n", decisionlog.OneLine(err.Error()))
		return exitUsage, nil
	}
	// The full hook reads the config file this run read, wherever the
	// holdfast binary is. It goes first: a --config in args wins, and it
	// named the same file; after a "--" it would be an argument.
	handed := append([]string{"--config", file}, args...)
	h := &Handoff{Started: start, Args: handed, Stage: stage, Config: cfg}
	deadline := cfg.Deadline(start)
	stateStart := time.Now()
	raw, err := linux.ReadLimited(linux.PollReader{Fd: int(stdin.Fd()), Deadline: deadline}, oneshot.MaxStateSize, "OCI state on stdin")
	if err != nil {
		// Without a state the full hook would have nothing more to go by
		// than this: no identity, so the fail mode alone.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("not done before the hook's deadline: %w", context.DeadlineExceeded)
		}
		return h.decideAlone(fmt.Errorf("read OCI state: %w", err), stderr), nil
	}
	h.State = raw
	steps := []decisionlog.Step{{Name: "state", Elapsed: time.Since(stateStart)}}
	if len(raw) > oneshot.MaxMessageSize-maxEnvelope {
		h.Why = fmt.Errorf("OCI state of %d bytes is too large for one request", len(raw))
		return 0, h
	}
	line, err := oneshot.Line(stage, raw)
	if err != nil {
		h.Why = err
		return 0, h
	}
	// The engine's share of the deadline, as the full hook counts it: what
	// is left after it is the slow path's.
	engineDeadline := start.Add(time.Duration(cfg.EngineTimeout))
	if deadline.Before(engineDeadline) {
		engineDeadline = deadline
	}
	engineStart := time.Now()
	answer, err := oneshot.Call(context.Background(), cfg.Socket, engineDeadline, line)
	var r oneshot.Reply
	if err == nil {
		if r, err = oneshot.DecodeReply(answer); err != nil {
			err = fmt.Errorf("read %s response from %s: %w", oneshot.Op, cfg.Socket, err)
		}
	}
	steps = append(steps, decisionlog.Step{Name: "engine", Elapsed: time.Since(engineStart)})
	if err != nil {
		h.Why = err
		return 0, h
	}
	steps = append(steps, decisionlog.EngineSteps(r.Steps)...)
	e := decisionlog.Entry{Time: start, Stage: stage, Steps: steps}
	switch {
	case r.Error == "" && r.Container != nil:
		c := r.Container
		e.Action, e.Outcome = "register", decisionlog.OutcomeRegistered
		e.ID, e.Namespace, e.Pod, e.Container, e.Policies = c.ID, c.Namespace, c.Pod, c.Name, c.Policies
		e.CgroupID, e.CgroupPath, e.CgroupFrom = c.CgroupID, c.CgroupPath, "engine"
	case r.Error == "":
		// At poststop, or a state that says the container stopped. The
		// engine names what it removed (an older one does not).
		e.Action, e.Outcome, e.ID = "unregister", decisionlog.OutcomeUnregistered, stateID(raw)
		if c := r.Removed; c != nil {
			e.Namespace, e.Pod, e.Container, e.Policies = c.Namespace, c.Pod, c.Name, c.Policies
			e.CgroupID, e.CgroupPath, e.CgroupFrom = c.CgroupID, c.CgroupPath, "engine"
		}
	case r.NotFound || r.Code == oneshot.CodeNotFound:
		e.Action, e.Outcome, e.ID = "unregister", decisionlog.OutcomeNotRegistered, stateID(raw)
	default:
		// A refusal: the full hook knows the identity, so the fail mode.
		h.Why = fmt.Errorf("engine refused %s: %s", oneshot.Op, r.Error)
		h.CannotEnforce = r.Code == oneshot.CodeCannotEnforce
		return 0, h
	}
	e.Elapsed = time.Since(start)
	if err := decisionlog.Append(cfg.Log, stderr, e.Line()); err != nil {
		fmt.Fprintf(stderr, "holdfast-oci-hook: %v\n", err)
	}
	return 0, nil
}

// stateID is the state's container id, for the log; "" if it has none.
func stateID(state []byte) string {
	id, _ := stateFields(state)
	return id
}

// stateFields reads the state's id and status, as far as it can.
func stateFields(state []byte) (id, status string) {
	s := jsonscan.New(state)
	s.Object(func(key string) error {
		switch key {
		case "id":
			return s.String(&id)
		case "status":
			return s.String(&status)
		}
		return s.Skip()
	})
	return id, status
}

// Handoff is a run for the full hook.
type Handoff struct {
	Started time.Time
	// Args is the hook's command line for the full hook, naming the
	// config file this process read.
	Args   []string
	Stage  string
	Config hookconfig.Config
	// State is what was read from stdin.
	State []byte
	// Why is what the fast path could not do; CannotEnforce says the
	// engine answered that it cannot enforce the container's policies.
	Why           error
	CannotEnforce bool
}

// Exec replaces this process with the full hook. It returns only when it
// could not.
func (h *Handoff) Exec() error {
	bin, err := registrar.FindHoldfast(h.Config.HoldfastBinary)
	if err != nil {
		return err
	}
	if h.State != nil {
		if err := stdinFrom(h.State); err != nil {
			return fmt.Errorf("hand the OCI state to %s: %w", bin, err)
		}
	}
	argv := append([]string{bin, HandoffCommand, ElapsedFlag, strconv.FormatInt(int64(time.Since(h.Started)), 10), "--"}, h.Args...)
	if err := unix.Exec(bin, argv, os.Environ()); err != nil {
		return fmt.Errorf("run %s %s: %w", bin, HandoffCommand, err)
	}
	return nil
}

// stdinFrom makes fd 0 a memory file holding data, read from its start.
func stdinFrom(data []byte) error {
	fd, err := unix.MemfdCreate("holdfast-oci-state", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(fd)
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			return fmt.Errorf("write memfd: %w", err)
		}
		rest = rest[n:]
	}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return fmt.Errorf("seek memfd: %w", err)
	}
	// dup3 without O_CLOEXEC: the full hook reads it as its stdin.
	if err := unix.Dup3(fd, 0, 0); err != nil {
		return fmt.Errorf("dup3 memfd to stdin: %w", err)
	}
	return nil
}

// Fail decides a run whose handoff failed with err: by the fail mode, with
// no namespace exemption (the full hook would parse the identity for it).
// An engine that answered it cannot enforce the container's policies still
// refuses it in fail-open mode. An unregister (poststop, or a state that
// says the container stopped) cannot refuse anything. It logs the decision
// and returns the exit status.
func (h *Handoff) Fail(err error, stderr io.Writer) int {
	why := err
	if h.Why != nil {
		why = fmt.Errorf("%w (the fast path: %v)", err, h.Why)
	}
	return h.decideAlone(why, stderr)
}

// decideAlone is Fail's decision for a run that failed with why.
func (h *Handoff) decideAlone(why error, stderr io.Writer) int {
	id, status := stateFields(h.State)
	e := decisionlog.Entry{Time: h.Started, Stage: h.Stage, ID: id, Error: why.Error()}
	code := 0
	if h.Stage == "poststop" || status == "stopped" {
		e.Action, e.Outcome, e.Reason = "unregister", decisionlog.OutcomeUnregisterErr, "poststop cannot refuse a container"
	} else {
		e.Action = "register"
		open, reason := h.Config.Settings.Decide("", h.CannotEnforce)
		e.Reason = reason + " (the namespace is unknown here)"
		e.Outcome = decisionlog.OutcomeFailOpen
		if !open {
			e.Outcome, code = decisionlog.OutcomeFailClosed, 1
		}
	}
	e.Elapsed = time.Since(h.Started)
	if err := decisionlog.Append(h.Config.Log, stderr, e.Line()); err != nil {
		fmt.Fprintf(stderr, "holdfast-oci-hook: %v\n", err)
	}
	if line := e.StderrLine(why); line != "" {
		io.WriteString(stderr, line)
	}
	return code
}
