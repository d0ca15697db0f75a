// Package fallback registers containers while the engine cannot be reached:
// the NRI plugin runs the holdfast binary's hidden register-offline and
// unregister-offline commands, which write the engine's registry and pinned
// maps themselves under the engine's state-dir lock, so it stays free of
// the policy and map code; the protocol (arguments, stdin, exit codes) is
// defined here for both sides. (The OCI hook's full run already runs inside
// the holdfast binary and does that work in process.) Unreachable tells both
// registrars when an engine call failed for want of an engine.
//
// Registrars and the holdfast command import it; it imports only engine/api
// and engine/api/registrar.
package fallback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// The hidden holdfast commands. register-offline reads an api.Container as
// JSON on stdin and writes the registered one on stdout; unregister-offline
// takes --id. Both take --state-dir, --bpf-dir and --timeout.
const (
	CommandRegister   = "register-offline"
	CommandUnregister = "unregister-offline"
)

// Exit codes of the commands besides 0 and 1 (any other failure).
const (
	ExitCannotEnforce = 3 // api.ErrCannotEnforce
	ExitNotFound      = 4 // api.ErrNotFound
)

// BinaryName is the holdfast binary looked up next to the registrar's own
// binary, then in PATH.
const BinaryName = registrar.HoldfastBinaryName

// Default state the engine of a production node keeps.
const (
	DefaultStateDir = registrar.DefaultStateDir
	DefaultBPFDir   = registrar.DefaultBPFDir
)

// Unreachable says whether err from an engine call means the engine did
// not answer (no socket, refused, no reply before the deadline, connection
// broken), as opposed to an answer refusing the request.
func Unreachable(err error) bool {
	return err != nil && !errors.Is(err, api.ErrRefused)
}

// Command runs the holdfast binary's offline commands. Its Register and
// Unregister have the engine client's signatures.
type Command struct {
	// Binary is the holdfast binary; empty means BinaryName next to the
	// registrar's own binary, else in PATH (looked up only when needed).
	Binary   string
	StateDir string
	BPFDir   string
}

// Register registers ctr without the engine and returns it as recorded.
// The error wraps api.ErrCannotEnforce when policies select the container
// but cannot be put in force.
func (c Command) Register(ctx context.Context, ctr api.Container) (*api.Container, error) {
	in, err := json.Marshal(ctr)
	if err != nil {
		return nil, fmt.Errorf("register container %s offline: encode: %w", ctr.ID, err)
	}
	out, err := c.run(ctx, in, CommandRegister)
	if err != nil {
		return nil, fmt.Errorf("register container %s offline: %w", ctr.ID, err)
	}
	var stored api.Container
	if err := json.Unmarshal(out, &stored); err != nil {
		return nil, fmt.Errorf("register container %s offline: read result %q: %w", ctr.ID, out, err)
	}
	return &stored, nil
}

// Unregister removes a registration without the engine; the error wraps
// api.ErrNotFound when the registry does not hold id.
func (c Command) Unregister(ctx context.Context, id string) error {
	if _, err := c.run(ctx, nil, CommandUnregister, "--id", id); err != nil {
		return fmt.Errorf("unregister container %s offline: %w", id, err)
	}
	return nil
}

// run runs one command and returns its stdout. The command gets the time
// left before ctx's deadline, less a margin to report in; if it has not
// ended by the deadline it is left to finish (killing it could cut a map
// update in half) and run returns the deadline error.
func (c Command) run(ctx context.Context, stdin []byte, sub string, args ...string) ([]byte, error) {
	bin, err := registrar.FindHoldfast(c.Binary)
	if err != nil {
		return nil, err
	}
	timeout := api.DefaultTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		timeout = left - min(left/10, 50*time.Millisecond)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("run %s %s: %w", bin, sub, context.DeadlineExceeded)
	}
	full := append([]string{sub, "--state-dir", c.stateDir(), "--bpf-dir", c.bpfDir(), "--timeout", timeout.String()}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s %s: %w", bin, sub, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s %s: no result before the deadline: %w", bin, sub, context.Cause(ctx))
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	msg := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "holdfast: ")
	if msg == "" {
		msg = err.Error()
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		switch exitErr.ExitCode() {
		case ExitCannotEnforce:
			return nil, fmt.Errorf("%w: %s", api.ErrCannotEnforce, msg)
		case ExitNotFound:
			return nil, fmt.Errorf("%w: %s", api.ErrNotFound, msg)
		}
	}
	return nil, fmt.Errorf("%s %s: %s", bin, sub, msg)
}

func (c Command) stateDir() string {
	if c.StateDir == "" {
		return DefaultStateDir
	}
	return c.StateDir
}

func (c Command) bpfDir() string {
	if c.BPFDir == "" {
		return DefaultBPFDir
	}
	return c.BPFDir
}
