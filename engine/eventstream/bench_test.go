package eventstream_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/eventlog"
	"github.com/holdfast-dev/holdfast/engine/eventstream"
)

// BenchmarkPublish is the engine's per-line cost after describe: number,
// encode, append to a rotating events file, offer to one subscriber that
// keeps up. Its inverse is the line rate the pipeline sustains.
func BenchmarkPublish(b *testing.B) {
	dir := b.TempDir()
	file, err := eventlog.Open(filepath.Join(dir, "events.jsonl"), 100<<20, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	q, _ := eventstream.OpenSequence(filepath.Join(dir, "seq"), 0)
	s := eventstream.New(eventstream.Options{Sink: file, Sequence: q, BootID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"})
	sub, err := s.Subscribe(api.EventFilter{Namespace: "shop"})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for range sub.Lines() {
		}
	}()
	ev := &api.Event{Time: time.Now(), Action: "connect-refused", Verdict: api.VerdictDeny, Mode: api.ModeEnforce, PID: 4242, Comm: "curl",
		Destination: "169.254.169.254:80", Protocol: "tcp", CgroupID: 123456,
		Container: &api.EventContainer{ID: "0123456789abcdef", Namespace: "shop", Pod: "web-0", Name: "main", Image: "nginx:1.27", Labels: map[string]string{"app": "web"}},
		Policy:    "web-lockdown", Rule: "169.254.169.254/32",
		Process:   &api.Process{Binary: "/usr/bin/curl", PID: 4242, Args: []string{"curl", "-s", "http://169.254.169.254/"}},
		Ancestors: []api.Process{{Binary: "/bin/sh", PID: 4200}, {Binary: "/usr/sbin/nginx", PID: 1}}}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Publish(ev); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	sub.Close()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
