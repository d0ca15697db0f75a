// Package eventstream is the engine's one path for event lines: it numbers
// each line (seq, boot ID, schema), writes it to the events sink and offers
// it to every subscriber without ever waiting for one. A subscriber that
// reads too slowly loses lines and is told how many.
//
// The engine (engine/daemon) and the holdfast command import it.
package eventstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// Record is one line of the stream before it is numbered.
type Record interface {
	Stamp(seq uint64, bootID string)
	Meta() api.EventMeta
}

// Defaults of a Stream.
const (
	DefaultSubscriberBuffer = 1024
	DefaultMaxSubscribers   = 64
)

// BootIDFile names the boot the kernel's timestamps belong to.
const BootIDFile = "/proc/sys/kernel/random/boot_id"

// BootID reads the kernel's boot ID.
func BootID() (string, error) {
	data, err := os.ReadFile(BootIDFile)
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// Options configure a Stream.
type Options struct {
	Sink     io.Writer // the events file; nil: subscribers only
	Sequence *Sequence
	BootID   string
	// SubscriberBuffer is how many lines wait for one subscriber before
	// further lines are dropped for it.
	SubscriberBuffer int
	MaxSubscribers   int
	Log              *slog.Logger // nil discards
}

// Stats are the stream's running totals.
type Stats struct {
	Lines       uint64 // numbered and published
	SinkErrors  uint64 // lines the sink refused
	Dropped     uint64 // lines dropped for slow subscribers, over all of them
	Subscribers int
}

// Stream is safe for concurrent use.
type Stream struct {
	opts Options

	mu          sync.Mutex
	subs        map[*Subscription]struct{}
	stats       Stats
	seqFailing  bool
	sinkFailing bool
}

// New makes a stream.
func New(opts Options) *Stream {
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = DefaultSubscriberBuffer
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = DefaultMaxSubscribers
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Stream{opts: opts, subs: map[*Subscription]struct{}{}}
}

// Publish numbers rec, writes it to the sink and queues it for each
// subscriber whose filter it passes. Lines reach the sink and subscribers
// in seq order. The error is the sink's.
func (s *Stream) Publish(rec Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seq uint64
	if s.opts.Sequence != nil {
		var err error
		seq, err = s.opts.Sequence.Next()
		s.noteFailure(&s.seqFailing, "event sequence", err)
	}
	rec.Stamp(seq, s.opts.BootID)
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode event %d: %w", seq, err)
	}
	line = append(line, '\n')
	s.stats.Lines++
	var sinkErr error
	if s.opts.Sink != nil {
		if _, err := s.opts.Sink.Write(line); err != nil {
			s.stats.SinkErrors++
			sinkErr = fmt.Errorf("write event %d: %w", seq, err)
		}
		s.noteFailure(&s.sinkFailing, "events file", sinkErr)
	}
	meta := rec.Meta()
	for sub := range s.subs {
		if !sub.filter.Match(meta) {
			continue
		}
		select {
		case sub.lines <- line:
		default:
			sub.lost.Add(1)
			s.stats.Dropped++
		}
	}
	return sinkErr
}

// noteFailure logs a failure when it starts and when it ends, not per line.
func (s *Stream) noteFailure(failing *bool, what string, err error) {
	switch {
	case err != nil && !*failing:
		s.opts.Log.Error(what+" failing", "err", err)
	case err == nil && *failing:
		s.opts.Log.Info(what + " works again")
	}
	*failing = err != nil
}

// ErrTooManySubscribers refuses a subscription past Options.MaxSubscribers.
var ErrTooManySubscribers = errors.New("too many event subscribers")

// Subscribe starts queuing the lines that pass f for a new subscriber.
func (s *Stream) Subscribe(f api.EventFilter) (*Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) >= s.opts.MaxSubscribers {
		return nil, fmt.Errorf("subscribe to events: %w (%d)", ErrTooManySubscribers, s.opts.MaxSubscribers)
	}
	sub := &Subscription{stream: s, filter: f, lines: make(chan []byte, s.opts.SubscriberBuffer)}
	s.subs[sub] = struct{}{}
	return sub, nil
}

// Stats returns the running totals.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Subscribers = len(s.subs)
	return st
}

// Subscription is one subscriber's queue; it implements
// api.EventSubscription.
type Subscription struct {
	stream *Stream
	filter api.EventFilter
	lines  chan []byte
	lost   atomic.Uint64
}

var _ api.EventSubscription = (*Subscription)(nil)

// Lines yields the queued lines; closed by Close.
func (sub *Subscription) Lines() <-chan []byte { return sub.lines }

// TakeLost returns the lines dropped since the last call.
func (sub *Subscription) TakeLost() uint64 { return sub.lost.Swap(0) }

// Close stops queuing for this subscriber.
func (sub *Subscription) Close() {
	s := sub.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.lines)
	}
}
