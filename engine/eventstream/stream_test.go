package eventstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/eventstream"
)

func TestSequenceNeverRepeatsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seq")
	q, err := eventstream.OpenSequence(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 25 {
		n, err := q.Next()
		if err != nil || n <= last {
			t.Fatalf("Next = %d, %v after %d", n, err, last)
		}
		last = n
	}
	// A crash loses the in-memory count: the reopened sequence starts
	// above everything handed out.
	q2, err := eventstream.OpenSequence(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := q2.Next(); n <= last {
		t.Errorf("reopened sequence reused %d (last was %d)", n, last)
	}

	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	q3, err := eventstream.OpenSequence(path, 10)
	if err == nil {
		t.Fatal("unreadable sequence file not reported")
	}
	if n, _ := q3.Next(); n <= uint64(time.Now().Add(-time.Hour).UnixMicro()) {
		t.Errorf("after an unreadable file numbering restarts low: %d", n)
	}
}

type line struct {
	api.Event
	LinesLost uint64 `json:"linesLost"`
}

func event(action, ns string) *api.Event {
	return &api.Event{Action: action, Verdict: api.VerdictDeny, Container: &api.EventContainer{ID: "c-" + ns, Namespace: ns}}
}

func TestPublishNumbersAndFilters(t *testing.T) {
	var sink bytes.Buffer
	q, _ := eventstream.OpenSequence(filepath.Join(t.TempDir(), "seq"), 0)
	s := eventstream.New(eventstream.Options{Sink: &sink, Sequence: q, BootID: "boot-1"})
	shop, err := s.Subscribe(api.EventFilter{Namespace: "shop", Types: []string{"exec-killed"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*api.Event{event("exec-killed", "shop"), event("connect-refused", "shop"), event("exec-killed", "bank")} {
		if err := s.Publish(ev); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	for _, l := range bytes.Split(bytes.TrimSpace(sink.Bytes()), []byte("\n")) {
		var ev api.Event
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Schema != api.EventSchema || ev.BootID != "boot-1" {
			t.Errorf("line lacks schema or boot id: %s", l)
		}
		seqs = append(seqs, ev.Seq)
	}
	if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 {
		t.Errorf("seqs %v, want 1 2 3", seqs)
	}
	select {
	case l := <-shop.Lines():
		var ev api.Event
		json.Unmarshal(l, &ev)
		if ev.Seq != 1 || ev.Action != "exec-killed" {
			t.Errorf("subscriber got %s", l)
		}
	default:
		t.Fatal("subscriber got nothing")
	}
	select {
	case l := <-shop.Lines():
		t.Errorf("filter let through %s", l)
	default:
	}
}

// subscribeOnly serves nothing but OpSubscribe.
type subscribeOnly struct {
	api.Handler
	stream *eventstream.Stream
}

func (h subscribeOnly) SubscribeEvents(f api.EventFilter) (api.EventSubscription, error) {
	return h.stream.Subscribe(f)
}

// A subscriber that stops reading costs Publish nothing; when it reads
// again it gets the queued lines and a notice of how many it lost.
func TestSlowSubscriberLosesLinesNotTheEngine(t *testing.T) {
	s := eventstream.New(eventstream.Options{SubscriberBuffer: 8})
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &api.Server{Handler: subscribeOnly{stream: s}, AllowUID: func(uint32) bool { return true }}
	go srv.Serve(ctx, l)

	stream, err := (&api.Client{Socket: sock}).SubscribeEvents(ctx, api.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	// Big lines fill the socket buffers quickly.
	big := &api.Event{Action: "flood", Comm: string(bytes.Repeat([]byte("x"), 4096))}
	const n = 2000
	for range n {
		s.Publish(big) // must return while nobody reads
	}
	if st := s.Stats(); st.Dropped == 0 {
		t.Fatalf("no line dropped for a subscriber that does not read: %+v", st)
	}
	// Nothing read so far: the socket buffer filled, then the queue.
	var delivered, lost uint64
	for delivered+lost < n {
		b, err := stream.Next()
		if err != nil {
			t.Fatalf("after %d lines delivered and %d reported lost of %d: %v", delivered, lost, n, err)
		}
		var l line
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("bad line %q", b)
		}
		if l.LinesLost > 0 {
			lost += l.LinesLost
		} else {
			delivered++
		}
	}
	if lost != s.Stats().Dropped || lost == 0 {
		t.Errorf("subscriber told of %d lost lines, stream dropped %d", lost, s.Stats().Dropped)
	}
}
