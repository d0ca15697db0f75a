package api

import (
	"context"
	"fmt"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// OneShot hands the engine one hook run on a connection of its own (see
// package oneshot). Long-lived registrars use Client.
type OneShot struct {
	Socket string
}

// Registered is what an OpHook answer says of the container registered.
type Registered = oneshot.Registered

// HookAnswer is the engine's answer to a hook run: the container it
// registered (nil when it unregistered one) and how long its steps took.
type HookAnswer struct {
	Registered *Registered
	Steps      oneshot.Steps
}

// Hook makes the hook request: ctx's deadline (else DefaultTimeout) bounds
// the connect, the send and the answer. An answer refusing the run is
// returned as the client's refusals are (ErrRefused and what it wraps).
func (o OneShot) Hook(ctx context.Context, run HookRun) (HookAnswer, error) {
	line, err := oneshot.Line(run.Stage, run.State)
	if err != nil {
		return HookAnswer{}, fmt.Errorf("hook run at %s: %w", run.Stage, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	answer, err := oneshot.Call(ctx, o.Socket, deadline, line)
	if err != nil {
		return HookAnswer{}, fmt.Errorf("hook run at %s: %w", run.Stage, err)
	}
	r, err := oneshot.DecodeReply(answer)
	if err != nil {
		return HookAnswer{}, fmt.Errorf("hook run at %s: read %s response from %s: %w", run.Stage, OpHook, o.Socket, err)
	}
	if r.Error != "" {
		// The steps say where in the engine the refusal came.
		return HookAnswer{Steps: r.Steps}, fmt.Errorf("hook run at %s: %w", run.Stage, refusal(OpHook, r.Error, r.Code, r.NotFound))
	}
	return HookAnswer{Registered: r.Container, Steps: r.Steps}, nil
}
