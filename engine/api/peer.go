package api

import (
	"context"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

type peerKey struct{}

// WithPeerPID returns ctx carrying the pid of the process at the other end
// of the request's connection (SO_PEERCRED), as the server saw it.
func WithPeerPID(ctx context.Context, pid int) context.Context {
	return context.WithValue(ctx, peerKey{}, pid)
}

// PeerPID is the requesting process's pid, when the request came over a
// connection whose credentials were read.
func PeerPID(ctx context.Context) (int, bool) {
	pid, ok := ctx.Value(peerKey{}).(int)
	return pid, ok && pid > 0
}

type afterKey struct{}

// afterAnswer collects what a request's handler leaves until its answer
// is written.
type afterAnswer struct{ fns []func() }

// withAfterAnswer returns ctx collecting AfterAnswer's work in a.
func withAfterAnswer(ctx context.Context, a *afterAnswer) context.Context {
	return context.WithValue(ctx, afterKey{}, a)
}

// AfterAnswer runs fn once the answer to ctx's request is written, so the
// registrar (and the container start it holds up) does not wait for it: a
// log line. Outside a server's request, fn runs at once.
func AfterAnswer(ctx context.Context, fn func()) {
	if a, ok := ctx.Value(afterKey{}).(*afterAnswer); ok {
		a.fns = append(a.fns, fn)
		return
	}
	fn()
}

// run runs the collected work, in order.
func (a *afterAnswer) run() {
	for _, fn := range a.fns {
		fn()
	}
	a.fns = a.fns[:0]
}

type stepsKey struct{}

// withSteps returns ctx timing its request's steps with t.
func withSteps(ctx context.Context, t *oneshot.StepTimer) context.Context {
	return context.WithValue(ctx, stepsKey{}, t)
}

// EndStep ends the current step of ctx's request, named name: the time
// since the step before ended, or since the request was read. An OpHook
// answer carries the steps to the hook's decision log. Outside a server's
// request it does nothing.
func EndStep(ctx context.Context, name string) {
	if t, ok := ctx.Value(stepsKey{}).(*oneshot.StepTimer); ok {
		t.End(name)
	}
}
