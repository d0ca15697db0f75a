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

type requestKey struct{}

// request is what the server keeps of one request while its handler runs:
// the work left until the answer is written and, for a hook run, the
// timer of its steps.
type request struct {
	after []func()
	steps *oneshot.StepTimer // nil but for OpHook
}

// withRequest returns ctx carrying r to AfterAnswer and EndStep.
func withRequest(ctx context.Context, r *request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// AfterAnswer runs fn once the answer to ctx's request is written, so the
// registrar (and the container start it holds up) does not wait for it: a
// log line. Outside a server's request, fn runs at once.
func AfterAnswer(ctx context.Context, fn func()) {
	if r, ok := ctx.Value(requestKey{}).(*request); ok {
		r.after = append(r.after, fn)
		return
	}
	fn()
}

// EndStep ends the current step of ctx's hook run, named name: the time
// since the step before ended, or since the request was read. An OpHook
// answer carries the steps to the hook's decision log. Outside a server's
// hook run it does nothing.
func EndStep(ctx context.Context, name string) {
	if r, ok := ctx.Value(requestKey{}).(*request); ok && r.steps != nil {
		r.steps.End(name)
	}
}

// answered runs the work left until the answer, in order, and readies r
// for the connection's next request.
func (r *request) answered() {
	for _, fn := range r.after {
		fn()
	}
	r.after, r.steps = r.after[:0], nil
}
