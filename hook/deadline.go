package hook

import (
	"context"
	"sync"
	"time"
)

// WithDeadline is a context that ends at deadline and sets no runtime
// timer until something waits on Done. context.WithDeadline arms a timer at
// once, and Go's first timer starts its network poller (an epoll instance,
// an eventfd, a thread parked in epoll_wait); the hook's forwarded run only
// reads the deadline, so for it none of that happens.
func WithDeadline(deadline time.Time) context.Context {
	return &deadlineContext{deadline: deadline}
}

type deadlineContext struct {
	deadline time.Time
	once     sync.Once
	timed    context.Context // made by the first Done
	cancel   context.CancelFunc
}

func (c *deadlineContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *deadlineContext) Value(any) any               { return nil }

func (c *deadlineContext) Done() <-chan struct{} {
	c.once.Do(func() { c.timed, c.cancel = context.WithDeadline(context.Background(), c.deadline) })
	return c.timed.Done()
}

func (c *deadlineContext) Err() error {
	if time.Now().Before(c.deadline) {
		return nil
	}
	return context.DeadlineExceeded
}

func (c *deadlineContext) String() string { return "hook.WithDeadline(" + c.deadline.String() + ")" }

// shorter is ctx ending at deadline if that comes first, without a timer
// when ctx is a WithDeadline.
func shorter(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if d, ok := ctx.(*deadlineContext); ok {
		if deadline.After(d.deadline) {
			return ctx, func() {}
		}
		return WithDeadline(deadline), func() {}
	}
	return context.WithDeadline(ctx, deadline)
}
