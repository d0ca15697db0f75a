package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

// EventSource is implemented by handlers that stream events (OpSubscribe);
// others answer that op with an error.
type EventSource interface {
	SubscribeEvents(f EventFilter) (EventSubscription, error)
}

// EventSubscription is one subscriber's bounded queue of event lines.
type EventSubscription interface {
	// Lines yields whole JSON lines, newline included; it is closed when
	// the engine ends the stream.
	Lines() <-chan []byte
	// TakeLost returns how many lines were dropped since the last call.
	TakeLost() uint64
	Close()
}

// DefaultStreamStall is how long an event subscriber may leave the stream
// unread before the engine drops it.
const DefaultStreamStall = time.Minute

// serveEvents answers a subscribe request and then writes the stream until
// the client hangs up, the engine stops or a write stalls.
func (s *Server) serveEvents(ctx context.Context, conn net.Conn, req *Request) {
	timeout := s.StreamStall
	if timeout <= 0 {
		timeout = DefaultStreamStall
	}
	write := func(p []byte) error {
		conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err := conn.Write(p)
		return err
	}
	answer := func(r *Response) error {
		line, _ := json.Marshal(r)
		return write(append(line, '\n'))
	}
	src, ok := s.Handler.(EventSource)
	if !ok {
		answer(&Response{Error: "subscribe: this engine cannot stream events"})
		return
	}
	var filter EventFilter
	if req.Events != nil {
		filter = *req.Events
	}
	sub, err := src.SubscribeEvents(filter)
	if err != nil {
		answer(&Response{Error: err.Error()})
		return
	}
	defer sub.Close()
	if err := answer(&Response{}); err != nil {
		return
	}
	// The client sends nothing more; its hang-up (or the engine's
	// shutdown, which sets a past read deadline) ends the read.
	conn.SetReadDeadline(time.Time{})
	if ctx.Err() != nil {
		return
	}
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	for {
		select {
		case <-gone:
			return
		case <-ctx.Done():
			return
		case line, ok := <-sub.Lines():
			if !ok {
				return
			}
			if err := write(line); err != nil {
				s.log().Info("event subscriber dropped", "err", err)
				return
			}
			if n := sub.TakeLost(); n > 0 {
				msg, _ := json.Marshal(Lost{LinesLost: n})
				if err := write(append(msg, '\n')); err != nil {
					s.log().Info("event subscriber dropped", "err", fmt.Errorf("write lost-lines notice: %w", err))
					return
				}
			}
		}
	}
}
