package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// DefaultTimeout bounds a call whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// Client talks to an engine socket. The zero value is not usable; set Socket.
type Client struct {
	Socket string
}

// Register adds or replaces a container and returns it as the engine stored
// it, with the policies that select it.
func (c *Client) Register(ctx context.Context, ctr Container) (*Container, error) {
	resp, err := c.call(ctx, Request{Op: OpRegister, Container: &ctr})
	if err != nil {
		return nil, fmt.Errorf("register container %s: %w", ctr.ID, err)
	}
	return resp.Container, nil
}

// Unregister removes a container; the error wraps ErrNotFound if the engine
// did not know it.
func (c *Client) Unregister(ctx context.Context, id string) error {
	if _, err := c.call(ctx, Request{Op: OpUnregister, ID: id}); err != nil {
		return fmt.Errorf("unregister container %s: %w", id, err)
	}
	return nil
}

// Sync makes the registrations of source exactly ctrs: it registers each and
// drops that source's registrations that are not in the list.
func (c *Client) Sync(ctx context.Context, source string, ctrs []Container) ([]Container, error) {
	resp, err := c.call(ctx, Request{Op: OpSync, Source: source, Containers: ctrs})
	if err != nil {
		return nil, fmt.Errorf("sync %d containers from %s: %w", len(ctrs), source, err)
	}
	return resp.Containers, nil
}

// List returns every registered container.
func (c *Client) List(ctx context.Context) ([]Container, error) {
	resp, err := c.call(ctx, Request{Op: OpList})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	return resp.Containers, nil
}

// Status returns the engine's enforcement status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, err := c.call(ctx, Request{Op: OpStatus})
	if err != nil {
		return nil, fmt.Errorf("engine status: %w", err)
	}
	return resp.Status, nil
}

// Reload makes the engine re-read its policy dir. A bad policy is refused
// with the reason and the enforced policies stay.
func (c *Client) Reload(ctx context.Context) error {
	if _, err := c.call(ctx, Request{Op: OpReload}); err != nil {
		return fmt.Errorf("reload policies: %w", err)
	}
	return nil
}

func (c *Client) call(ctx context.Context, req Request) (*Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", c.Socket, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline on %s: %w", c.Socket, err)
	}
	// Closing on cancellation unblocks reads that the deadline alone would not.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("send %s request to %s: %w", req.Op, c.Socket, ctxErr(ctx, err))
	}
	var resp Response
	if err := json.NewDecoder(&limitedReader{r: conn, n: MaxMessageSize}).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read %s response from %s: %w", req.Op, c.Socket, ctxErr(ctx, err))
	}
	if resp.Error != "" {
		err := errors.New(resp.Error)
		if resp.NotFound {
			err = fmt.Errorf("%w: %s", ErrNotFound, resp.Error)
		}
		return nil, fmt.Errorf("engine refused %s: %w", req.Op, err)
	}
	return &resp, nil
}

// ctxErr prefers the context's reason (deadline, cancel) over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	// The socket deadline is the context's; it can fire a moment first.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}
