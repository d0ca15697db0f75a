package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/eventlog"
	"github.com/holdfast-dev/holdfast/test/require"
)

// startEngine runs a real engine (BPF programs on a bpffs of its own) on
// a policy dir holding files.
func startEngine(t *testing.T, files map[string]string, observe ObserveOptions) (*Engine, string) {
	t.Helper()
	require.Root(t)
	dir := t.TempDir()
	bpffs, policies := filepath.Join(dir, "bpffs"), filepath.Join(dir, "policies")
	for _, d := range []string{bpffs, policies} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	require.Privileged(t, "bpffs", linux.MountBPFFS(bpffs))
	t.Cleanup(func() { linux.Unmount(bpffs) })
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(policies, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	eventsPath := filepath.Join(dir, "events.jsonl")
	events, err := eventlog.Open(eventsPath, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(context.Background(), Options{PolicyDir: policies, StateDir: filepath.Join(dir, "state"),
		BPFDir: filepath.Join(bpffs, "holdfast"), Events: events, Observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		events.Close()
		bpf.Uninstall(bpf.Layout{Root: filepath.Join(bpffs, "holdfast")})
	})
	return e, eventsPath
}

const secretsFilter = `apiVersion: holdfast.dev/v1alpha1
kind: RedactionFilter
metadata: {name: secrets}
spec:
  args: ['token=(\w+)']
  argFlags: [--password]
  envKeys: ['*_TOKEN']
`

// chainEvent is a kill whose process and ancestors carry secrets in argv
// and environment, as process tracking fills them in.
func chainEvent() *api.Event {
	return &api.Event{Action: bpf.ActionExecKilled, Verdict: api.VerdictDeny, Mode: api.ModeEnforce, Time: time.Now(), PID: 131,
		Process: &api.Process{Binary: "/usr/bin/curl", PID: 131, Args: []string{"curl", "--password", "hunter2"}, Env: []string{"GH_TOKEN=tok1", "HOME=/root"}},
		Ancestors: []api.Process{
			{Binary: "/bin/sh", PID: 130, Args: []string{"sh", "-c", "curl token=tok2"}, Env: []string{"CI_TOKEN=tok3"}},
			{Binary: "/usr/sbin/nginx", PID: 123, Args: []string{"nginx", "--password=pw"}},
		}}
}

var secrets = []string{"hunter2", "tok1", "tok2", "tok3", "=pw"}

// Redaction happens before any sink: the events file and a subscriber
// get the same masked line, for the process and every ancestor.
func TestPipelineRedactsProcessAndAncestors(t *testing.T) {
	for _, captureEnv := range []bool{false, true} {
		e, eventsPath := startEngine(t, map[string]string{"secrets.yaml": secretsFilter}, ObserveOptions{CaptureEnv: captureEnv})
		sub, err := e.SubscribeEvents(api.EventFilter{Types: []string{bpf.ActionExecKilled}})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.writeEvent(chainEvent()); err != nil {
			t.Fatal(err)
		}
		file, err := os.ReadFile(eventsPath)
		if err != nil {
			t.Fatal(err)
		}
		var streamed []byte
		select {
		case streamed = <-sub.Lines():
		case <-time.After(5 * time.Second):
			t.Fatal("subscriber got no line")
		}
		sub.Close()
		if string(streamed) != string(file) {
			t.Errorf("file and stream differ:\n%s\n%s", file, streamed)
		}
		for _, s := range secrets {
			if strings.Contains(string(file), s) {
				t.Errorf("capture-env %v: secret %q in %s", captureEnv, s, file)
			}
		}
		var ev api.Event
		if err := json.Unmarshal(file, &ev); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ev.Process.Args, []string{"curl", "--password", "*****"}) ||
			!slices.Equal(ev.Ancestors[0].Args, []string{"sh", "-c", "curl token=*****"}) ||
			!slices.Equal(ev.Ancestors[1].Args, []string{"nginx", "--password=*****"}) {
			t.Errorf("argv not redacted: %+v %+v", ev.Process, ev.Ancestors)
		}
		wantEnv := []string(nil)
		if captureEnv {
			wantEnv = []string{"GH_TOKEN=*****", "HOME=/root"}
		}
		if !slices.Equal(ev.Process.Env, wantEnv) {
			t.Errorf("capture-env %v: env %q, want %q", captureEnv, ev.Process.Env, wantEnv)
		}
		if !slices.Equal(ev.RedactedBy, []string{"secrets"}) || ev.Seq == 0 || ev.BootID == "" {
			t.Errorf("line lacks redactedBy, seq or boot id: %s", file)
		}
	}
}

// Without a valid filter set ever loaded, every argument is masked.
func TestPipelineFailsClosedWithoutFilters(t *testing.T) {
	bad := strings.Replace(secretsFilter, "argFlags: [--password]", "argFlags: [password]", 1)
	e, eventsPath := startEngine(t, map[string]string{"secrets.yaml": bad}, ObserveOptions{})
	st, err := e.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.RedactionError, "spec.argFlags[0]") {
		t.Errorf("status redaction error %q does not name spec.argFlags[0]", st.RedactionError)
	}
	if err := e.writeEvent(chainEvent()); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(eventsPath)
	if err != nil {
		t.Fatal(err)
	}
	var ev api.Event
	if err := json.Unmarshal(file, &ev); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ev.Process.Args, []string{"curl", "*****", "*****"}) || !slices.Equal(ev.Ancestors[1].Args, []string{"nginx", "*****"}) ||
		!slices.Equal(ev.RedactedBy, []string{"holdfast-fail-closed"}) {
		t.Errorf("without valid filters: %s", file)
	}
}
