package api

import "context"

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
