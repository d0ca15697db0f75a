package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout bounds a call whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// Client talks to an engine socket. The zero value is not usable; set Socket.
// It keeps one idle connection for the next call, so a registrar pays the
// connect once; Close releases it. Safe for concurrent use: a call that finds
// the connection busy dials its own.
type Client struct {
	Socket string

	mu     sync.Mutex
	idle   *clientConn
	closed bool
}

type clientConn struct {
	net.Conn
	in *jsonStream
}

// Close releases the idle connection. Calls after Close still work, each on
// a connection of its own.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	if idle != nil {
		return idle.Close()
	}
	return nil
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

// Explain resolves the exec rules of a registered container in its root;
// the error wraps ErrNotFound if the engine does not know it.
func (c *Client) Explain(ctx context.Context, id string) (*Explanation, error) {
	resp, err := c.call(ctx, Request{Op: OpExplain, ID: id})
	if err != nil {
		return nil, fmt.Errorf("explain container %s: %w", id, err)
	}
	return resp.Explain, nil
}

// Reload makes the engine re-read its policy dir. A bad policy is refused
// with the reason and the enforced policies stay.
func (c *Client) Reload(ctx context.Context) error {
	if _, err := c.call(ctx, Request{Op: OpReload}); err != nil {
		return fmt.Errorf("reload policies: %w", err)
	}
	return nil
}

// Connect dials the engine ahead of the first call and keeps the
// connection for it, so a short-lived client (the OCI hook) overlaps the
// connection's set-up, on both ends, with its own work. A failure is not
// kept: the next call dials again and reports it.
func (c *Client) Connect(ctx context.Context) error {
	cc, err := c.dial(ctx)
	if err != nil {
		return err
	}
	c.putIdle(cc)
	return nil
}

func (c *Client) call(ctx context.Context, req Request) (*Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	cc := c.takeIdle()
	reused := cc != nil
	if !reused {
		var err error
		if cc, err = c.dial(ctx); err != nil {
			return nil, err
		}
	}
	resp, unanswered, err := c.exchange(ctx, cc, &req)
	if err != nil && reused && unanswered {
		// The engine closed the idle connection (idle timeout, restart)
		// before it read this request: a fresh one is safe.
		if cc, err = c.dial(ctx); err != nil {
			return nil, err
		}
		resp, _, err = c.exchange(ctx, cc, &req)
	}
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, refusal(req.Op, resp.Error, resp.Code, resp.NotFound)
	}
	return resp, nil
}

// refusal is the error of an answer refusing an op: ErrRefused, and the
// sentinel its code names.
func refusal(op, msg, code string, notFound bool) error {
	err := errors.New(msg)
	switch {
	case notFound || code == CodeNotFound:
		err = fmt.Errorf("%w: %s", ErrNotFound, msg)
	case code == CodeCannotEnforce:
		err = fmt.Errorf("%w: %s", ErrCannotEnforce, msg)
	case code == CodeUnsupported || strings.HasPrefix(msg, unknownOpPrefix):
		// The prefix: engines older than the code answered that way.
		err = fmt.Errorf("%w: %s", ErrUnsupported, msg)
	}
	return fmt.Errorf("%w %s: %w", ErrRefused, op, err)
}

func (c *Client) takeIdle() *clientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc := c.idle
	c.idle = nil
	return cc
}

func (c *Client) putIdle(cc *clientConn) {
	c.mu.Lock()
	if c.idle == nil && !c.closed {
		c.idle, cc = cc, nil
	}
	c.mu.Unlock()
	if cc != nil {
		cc.Close()
	}
}

func (c *Client) dial(ctx context.Context) (*clientConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, fmt.Errorf("connect to engine at %s: %w", c.Socket, err)
	}
	return &clientConn{Conn: conn, in: newJSONStream(conn)}, nil
}

// exchange sends req and reads its response on cc, then keeps cc for the
// next call, or closes it on any failure. unanswered reports a failure that
// shows the engine had closed the connection before reading the request:
// it broke or ended before any byte of an answer, with no deadline involved.
func (c *Client) exchange(ctx context.Context, cc *clientConn, req *Request) (resp *Response, unanswered bool, err error) {
	deadline, _ := ctx.Deadline()
	if err := cc.SetDeadline(deadline); err != nil {
		cc.Close()
		return nil, false, fmt.Errorf("set deadline on %s: %w", c.Socket, err)
	}
	// Closing on cancellation unblocks reads that the deadline alone would not.
	stop := context.AfterFunc(ctx, func() { cc.Close() })
	resp, unanswered, err = c.roundTrip(ctx, cc, req)
	if !stop() || err != nil {
		cc.Close()
		return resp, unanswered && ctx.Err() == nil, err
	}
	c.putIdle(cc)
	return resp, false, nil
}

func (c *Client) roundTrip(ctx context.Context, cc *clientConn, req *Request) (*Response, bool, error) {
	sendErr := json.NewEncoder(cc).Encode(req)
	if sendErr != nil && !brokenConn(sendErr) {
		return nil, false, fmt.Errorf("send %s request to %s: %w", req.Op, c.Socket, ctxErr(ctx, sendErr))
	}
	// Even after a broken send, the engine may have said why (an oversized
	// request) before it closed.
	cc.in.next()
	before := cc.in.lr.read
	var resp Response
	readErr := cc.in.dec.Decode(&resp)
	if readErr == nil {
		return &resp, false, nil
	}
	// io.EOF from Decode means no byte of a value came; a break counts only
	// before any byte was read.
	unanswered := errors.Is(readErr, io.EOF) || (brokenConn(readErr) && cc.in.lr.read == before)
	if sendErr != nil {
		return nil, unanswered, fmt.Errorf("send %s request to %s: %w", req.Op, c.Socket, ctxErr(ctx, sendErr))
	}
	return nil, unanswered, fmt.Errorf("read %s response from %s: %w", req.Op, c.Socket, ctxErr(ctx, readErr))
}

// brokenConn tells the errors of a connection its peer closed.
func brokenConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
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
