package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// eventLine is any line of the events stream: an event, a denial summary
// (Summary set) or, on a live stream, a notice of lines lost.
type eventLine struct {
	api.Event
	Summary    string `json:"summary"`
	Count      uint64 `json:"count"`
	Suppressed uint64 `json:"suppressed"`
	LinesLost  uint64 `json:"linesLost"`
}

func (l *eventLine) meta() api.EventMeta {
	m := l.Event.Meta()
	if l.Summary != "" {
		m.Type = l.Summary
	}
	return m
}

var verdicts = []string{api.VerdictDeny, api.VerdictWouldDeny, api.VerdictAllow}

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events")
	socket := fs.String("socket", defaultSocket, "engine socket")
	var f api.EventFilter
	fs.StringVar(&f.Namespace, "namespace", "", "only events of this namespace")
	fs.StringVar(&f.Pod, "pod", "", "only events of this pod")
	fs.StringVar(&f.Container, "container", "", "only events of this container (name or id)")
	fs.StringVar(&f.Policy, "policy", "", "only events of this policy")
	types := fs.String("type", "", "only these types, comma-separated (exec-killed,connect-refused,...)")
	verdict := fs.String("verdict", "", "only these verdicts, comma-separated: deny, wouldDeny, allow")
	output := fs.String("o", "text", "output format: text (one line per event) or json (the events file's lines)")
	since := fs.String("since", "", "first replay the events file from this long ago (10m) or this time (RFC3339)")
	eventsFile := fs.String("events-file", "", "events file to replay (default: the engine's --events file)")
	if err := parseWithOutput(fs, args, output); err != nil {
		return err
	}
	f.Types = splitList(*types)
	f.Verdicts = splitList(*verdict)
	for _, v := range f.Verdicts {
		if !slices.Contains(verdicts, v) {
			return usageError{fmt.Sprintf("events: --verdict %q: want %s", v, strings.Join(verdicts, ", "))}
		}
	}
	var from time.Time
	if *since != "" {
		var err error
		if from, err = parseSince(*since, time.Now()); err != nil {
			return usageError{fmt.Sprintf("events: --since: %v", err)}
		}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	emit := func(raw []byte, l *eventLine) error {
		var err error
		if *output == "json" {
			_, err = fmt.Fprintf(stdout, "%s\n", raw)
		} else {
			_, err = fmt.Fprintln(stdout, formatEvent(l))
		}
		return err
	}

	r := &eventsReader{client: &api.Client{Socket: *socket}, filter: f, file: *eventsFile, emit: emit, stderr: stderr}
	// Subscribed before the replay, so nothing falls between the two.
	stream, err := r.client.SubscribeEvents(ctx, f)
	if err != nil {
		return err
	}
	if *since != "" {
		path, err := r.eventsFile(ctx)
		if err != nil {
			stream.Close()
			return err
		}
		if r.last, err = replay(path, from, 0, f, emit); err != nil {
			stream.Close()
			return err
		}
	}
	for {
		err := r.follow(stream)
		stream.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errStreamBroke) {
			return err
		}
		// The engine restarted or went away: resubscribe, then catch up from
		// the file on what was published meanwhile (seq never repeats).
		fmt.Fprintf(stderr, "holdfast events: %v; reconnecting\n", err)
		if stream, err = r.resubscribe(ctx); err != nil {
			return nil // ctx done
		}
		path, err := r.eventsFile(ctx)
		if err == nil {
			var last uint64
			if last, err = replay(path, time.Time{}, r.last, f, emit); err == nil {
				r.last = max(r.last, last)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "holdfast events: lines published while disconnected may be missing: %v\n", err)
		}
	}
}

// errStreamBroke marks a stream the engine ended or broke, which a reader
// resubscribes to, unlike a failure to print.
var errStreamBroke = errors.New("stream lost")

// eventsReader follows the stream, remembering the last line printed.
type eventsReader struct {
	client *api.Client
	filter api.EventFilter
	file   string // events file to replay; "" asks the engine
	emit   func([]byte, *eventLine) error
	stderr io.Writer
	last   uint64 // highest seq printed
}

// eventsFile is --events-file or the engine's events file.
func (r *eventsReader) eventsFile(ctx context.Context) (string, error) {
	if r.file != "" {
		return r.file, nil
	}
	st, err := r.client.Status(ctx)
	if err != nil {
		return "", err
	}
	if st.EventsFile == "" {
		return "", errors.New("events: the engine writes events to stderr, not a file; give --events-file to replay one")
	}
	return st.EventsFile, nil
}

// follow prints the stream's lines until it ends.
func (r *eventsReader) follow(stream *api.EventStream) error {
	for {
		raw, err := stream.Next()
		if err != nil {
			return fmt.Errorf("%w: %w", errStreamBroke, err)
		}
		var l eventLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("events: bad line from the engine: %w", err)
		}
		if l.LinesLost > 0 {
			fmt.Fprintf(r.stderr, "holdfast events: the engine dropped %d lines for this reader (it read too slowly)\n", l.LinesLost)
			continue
		}
		if l.Seq != 0 && l.Seq <= r.last {
			continue // already printed from the file
		}
		if err := r.emit(raw, &l); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		r.last = max(r.last, l.Seq)
	}
}

// resubscribe retries every second until it succeeds or ctx is done.
func (r *eventsReader) resubscribe(ctx context.Context) (*api.EventStream, error) {
	for {
		stream, err := r.client.SubscribeEvents(ctx, r.filter)
		if err == nil {
			fmt.Fprintln(r.stderr, "holdfast events: reconnected")
			return stream, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// parseSince reads a duration back from now or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration (10m) nor an RFC 3339 time", s)
	}
	return t, nil
}

// replay prints the lines of the events file and its rotated backups,
// oldest first, at or after from, numbered above after (when after > 0),
// that pass f, and returns the highest seq printed.
func replay(path string, from time.Time, after uint64, f api.EventFilter, emit func([]byte, *eventLine) error) (uint64, error) {
	var files []string
	for i := 1; ; i++ {
		backup := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(backup); err != nil {
			break
		}
		files = append(files, backup)
	}
	slices.Reverse(files)
	files = append(files, path)
	var last uint64
	for _, name := range files {
		if err := replayFile(name, from, after, f, emit, &last); err != nil {
			return last, err
		}
	}
	return last, nil
}

func replayFile(name string, from time.Time, after uint64, f api.EventFilter, emit func([]byte, *eventLine) error, last *uint64) error {
	file, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil // rotated away meanwhile, or no event yet
	}
	if err != nil {
		return fmt.Errorf("replay events: %w", err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 64<<10), api.MaxMessageSize)
	for sc.Scan() {
		var l eventLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // a line cut by a crash or a full disk
		}
		if l.Time.Before(from) || after > 0 && l.Seq <= after || !f.Match(l.meta()) {
			continue
		}
		if err := emit(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("replay events: %w", err)
		}
		*last = max(*last, l.Seq)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("replay events from %s: %w", name, err)
	}
	return nil
}

// formatEvent is the text form of one line: time, seq, what happened,
// where, under which rule, and the process chain that did it.
func formatEvent(l *eventLine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d ", l.Time.Format("2006-01-02T15:04:05.000Z07:00"), l.Seq)
	if l.Summary != "" {
		fmt.Fprintf(&b, "summary %s x%d (%d suppressed)", l.Summary, l.Count, l.Suppressed)
	} else {
		b.WriteString(l.Action)
	}
	if l.Verdict != "" {
		b.WriteString(" " + l.Verdict)
	}
	if c := l.Container; c != nil {
		switch {
		case c.Namespace != "" || c.Pod != "" || c.Name != "":
			fmt.Fprintf(&b, " %s/%s/%s", c.Namespace, c.Pod, c.Name)
		default:
			fmt.Fprintf(&b, " container %s", c.ID)
		}
	} else if l.CgroupID != 0 {
		fmt.Fprintf(&b, " cgroup %d", l.CgroupID)
	}
	if l.Policy != "" {
		fmt.Fprintf(&b, " policy=%s rule=%q", l.Policy, l.Rule)
	}
	if l.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", l.Reason)
	}
	if l.Destination != "" {
		fmt.Fprintf(&b, " dest=%s/%s", l.Destination, l.Protocol)
	}
	if l.Binary != "" && l.Summary == "" {
		fmt.Fprintf(&b, " binary=%s", l.Binary)
	}
	if chain := processChain(&l.Event); chain != "" {
		b.WriteString(" " + chain)
	}
	if l.Process != nil && len(l.Process.Args) > 0 {
		fmt.Fprintf(&b, " args=%q", l.Process.Args)
	}
	if len(l.RedactedBy) > 0 {
		fmt.Fprintf(&b, " redactedBy=%s", strings.Join(l.RedactedBy, ","))
	}
	return b.String()
}

// processChain shows the ancestry oldest first: nginx(123) → sh(130) → curl(131).
func processChain(ev *api.Event) string {
	if ev.Process == nil {
		if ev.PID == 0 {
			return ""
		}
		return fmt.Sprintf("%s(%d)", ev.Comm, ev.PID)
	}
	var parts []string
	if ev.AncestorsIncomplete {
		parts = append(parts, "…")
	}
	for i := len(ev.Ancestors) - 1; i >= 0; i-- {
		parts = append(parts, fmt.Sprintf("%s(%d)", ev.Ancestors[i].Name(), ev.Ancestors[i].PID))
	}
	parts = append(parts, fmt.Sprintf("%s(%d)", ev.Process.Name(), ev.Process.PID))
	return strings.Join(parts, " → ")
}
