package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrStreamEnded is returned (wrapped) when the engine closes an event
// stream: it stopped, or the subscriber stalled past its write deadline.
var ErrStreamEnded = errors.New("event stream ended by the engine")

// EventStream is a subscription to the engine's events.
type EventStream struct {
	socket string
	ctx    context.Context
	conn   net.Conn
	sc     *bufio.Scanner
	stop   func() bool
}

// SubscribeEvents subscribes to the engine's events that pass f. It
// returns once the engine has answered (within DefaultTimeout): every
// event after that reaches the stream, or is counted in a Lost line. The
// stream ends when ctx is done or Close is called.
func (c *Client) SubscribeEvents(ctx context.Context, f EventFilter) (*EventStream, error) {
	dialCtx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	cc, err := c.dial(dialCtx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("subscribe to events: %w", err)
	}
	s := &EventStream{socket: c.Socket, ctx: ctx, conn: cc, sc: bufio.NewScanner(cc)}
	s.stop = context.AfterFunc(ctx, func() { cc.Close() })
	s.sc.Buffer(make([]byte, 64<<10), MaxMessageSize)
	cc.SetDeadline(time.Now().Add(DefaultTimeout))
	if err := json.NewEncoder(cc).Encode(Request{Op: OpSubscribe, Events: &f}); err != nil {
		s.Close()
		return nil, fmt.Errorf("subscribe to events at %s: %w", c.Socket, ctxErr(ctx, err))
	}
	if !s.sc.Scan() {
		err := s.sc.Err()
		if err == nil {
			err = ErrStreamEnded
		}
		s.Close()
		return nil, fmt.Errorf("subscribe to events at %s: no answer: %w", c.Socket, ctxErr(ctx, err))
	}
	var resp Response
	if err := json.Unmarshal(s.sc.Bytes(), &resp); err != nil {
		s.Close()
		return nil, fmt.Errorf("subscribe to events at %s: bad answer: %w", c.Socket, err)
	}
	if resp.Error != "" {
		s.Close()
		return nil, fmt.Errorf("engine refused %s: %s", OpSubscribe, resp.Error)
	}
	cc.SetDeadline(time.Time{})
	return s, nil
}

// Next returns the next line (valid until the next call): an event, a
// summary or a Lost notice. It blocks until one comes; after ctx is done it
// returns ctx's error.
func (s *EventStream) Next() ([]byte, error) {
	if s.sc.Scan() {
		return s.sc.Bytes(), nil
	}
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.sc.Err(); err != nil {
		return nil, fmt.Errorf("read events from %s: %w", s.socket, err)
	}
	return nil, fmt.Errorf("read events from %s: %w", s.socket, ErrStreamEnded)
}

// Close ends the subscription.
func (s *EventStream) Close() error {
	s.stop()
	return s.conn.Close()
}
