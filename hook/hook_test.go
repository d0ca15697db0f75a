package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// fakeEngine is an api.Handler behind a real api.Server on a Unix socket:
// the boundary the hook talks to, without BPF behind it.
type fakeEngine struct {
	mu         sync.Mutex
	registered map[string]api.Container
	failWith   error
	policies   []string
}

func (f *fakeEngine) Register(_ context.Context, c api.Container) (*api.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	c.Policies = f.policies
	f.registered[c.ID] = c
	return &c, nil
}

func (f *fakeEngine) Unregister(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.registered[id]; !ok {
		return fmt.Errorf("unregister %s: %w", id, api.ErrNotFound)
	}
	delete(f.registered, id)
	return nil
}

func (f *fakeEngine) Sync(context.Context, string, []api.Container) ([]api.Container, error) {
	return nil, errors.New("not used by the hook")
}

func (f *fakeEngine) List(context.Context) ([]api.Container, error) {
	return nil, errors.New("not used by the hook")
}

func (f *fakeEngine) Status(context.Context) (*api.Status, error) {
	return nil, errors.New("not used by the hook")
}

func (f *fakeEngine) Reload(context.Context) error {
	return errors.New("not used by the hook")
}

func (f *fakeEngine) get(id string) (api.Container, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.registered[id]
	return c, ok
}

// Hook takes a forwarded run as the engine does, the cgroup and the read
// through the hook's root aside.
func (f *fakeEngine) Hook(ctx context.Context, run api.HookRun) (api.HookResult, error) {
	st, err := ocihook.ParseState(run.State)
	if err != nil {
		return api.HookResult{}, err
	}
	if run.Stage == string(ocihook.StagePoststop) || st.Status == specs.StateStopped {
		return api.HookResult{}, f.Unregister(ctx, st.ID)
	}
	if err := ocihook.CheckCreateState(st, ocihook.Stage(run.Stage)); err != nil {
		return api.HookResult{}, err
	}
	cfg, err := ocihook.ReadBundleConfig(st.Bundle)
	if err != nil {
		return api.HookResult{}, err
	}
	c, err := ocihook.Registration(ocihook.Stage(run.Stage), st, cfg)
	if err != nil {
		return api.HookResult{}, err
	}
	reg, err := f.Register(ctx, c)
	return api.HookResult{Registered: reg}, err
}

// legacyEngine is an engine from before OpHook: it serves the other
// requests only.
type legacyEngine struct{ api.Handler }

// startFakeEngine serves a fake engine that takes forwarded hook runs.
func startFakeEngine(t *testing.T) (*fakeEngine, string) {
	t.Helper()
	f := &fakeEngine{registered: map[string]api.Container{}}
	return f, serveFake(t, f)
}

// startLegacyFakeEngine serves a fake engine that does not know OpHook,
// as an engine older than the hook during an upgrade.
func startLegacyFakeEngine(t *testing.T) (*fakeEngine, string) {
	t.Helper()
	f := &fakeEngine{registered: map[string]api.Container{}}
	return f, serveFake(t, legacyEngine{f})
}

func serveFake(t *testing.T, h api.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "engine.sock")
	l, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &api.Server{Handler: h, AllowUID: func(uint32) bool { return true }}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

func newHook(stage ocihook.Stage, socket string, cfg hookconfig.Config) *Hook {
	cfg.Socket = socket
	return &Hook{Stage: stage, Config: cfg.WithDefaults(), Engine: &api.Client{Socket: socket}, Forward: api.OneShot{Socket: socket}}
}

func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRunRegistersAndUnregisters runs the hook against an engine that takes
// the run whole (the hook only reads its stdin and forwards it) and
// against an engine from before that (the hook reads config.json and the
// cgroup itself, after the engine refused the forward).
func TestRunRegistersAndUnregisters(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(*testing.T) (*fakeEngine, string)
		steps string
	}{
		// The engine's answer times its reading of the request, its
		// refusal of a hook run (an engine without OpHook) too.
		{"forwarded", startFakeEngine, "state,engine,engine.request"},
		{"legacy engine", startLegacyFakeEngine, "state,engine,engine.request,config,cgroup,engine"},
	} {
		t.Run(tt.name, func(t *testing.T) { testRegistersAndUnregisters(t, tt.start, tt.steps) })
	}
}

func distinct(names []string) map[string]bool {
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	return set
}

func testRegistersAndUnregisters(t *testing.T, start func(*testing.T) (*fakeEngine, string), wantSteps string) {
	cg, _ := newTestCgroup(t)
	pid := cg.Start(t, "sleep", "600").Process.Pid
	eng, sock := start(t)
	eng.policies = []string{"deny-shell"}
	ann := map[string]string{ocihook.CRIONamespace: "shop", ocihook.CRIOPodName: "web", ocihook.CRIOLabels: `{"app":"web"}`}
	b := harness.OCIBundle(t, ann, "")

	h := newHook(ocihook.StageCreateRuntime, sock, hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	d := h.Run(deadline(t, 5*time.Second), strings.NewReader(harness.OCIState("c1", "creating", pid, b, nil)))
	if d.Err != nil || d.Outcome != OutcomeRegistered || d.ExitCode() != 0 {
		t.Fatalf("register: outcome %s exit %d err %v", d.Outcome, d.ExitCode(), d.Err)
	}
	got, ok := eng.get("c1")
	if !ok {
		t.Fatal("engine has no registration for c1")
	}
	if d.Container.Namespace != "shop" || d.Container.Pod != "web" {
		t.Errorf("decision logs %+v, want the registered shop/web", d.Container)
	}
	if wantSteps != "state,engine,engine.request" {
		// The fake engine does not resolve cgroups; only the hook's own
		// work can be checked for one.
		if got.CgroupID != cg.ID {
			t.Fatalf("engine got cgroup %d, want %d", got.CgroupID, cg.ID)
		}
	} else if got.Pid != pid {
		t.Fatalf("engine got pid %d, want the state's %d", got.Pid, pid)
	}
	if got.Namespace != "shop" || got.Pod != "web" || got.Labels["app"] != "web" || got.Source != ocihook.Source {
		t.Fatalf("engine got %+v, want cgroup %d of shop/web with app=web", got, cg.ID)
	}
	if strings.Join(d.Container.Policies, ",") != "deny-shell" {
		t.Errorf("decision policies = %v", d.Container.Policies)
	}
	var steps []string
	for _, s := range d.Steps {
		steps = append(steps, s.Name)
	}
	var logged struct{ StepsUS map[string]int64 }
	if err := json.Unmarshal(d.LogLine(), &logged); err != nil {
		t.Fatalf("log line %s: %v", d.LogLine(), err)
	}
	if strings.Join(steps, ",") != wantSteps || len(logged.StepsUS) != len(distinct(strings.Split(wantSteps, ","))) {
		t.Errorf("steps %v, log line %s: want every step timed and logged", steps, d.LogLine())
	}

	// One hooks.d entry serves both stages: a create-stage hook that sees
	// status "stopped" unregisters.
	d = h.Run(deadline(t, 5*time.Second), strings.NewReader(`{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"`+b+`"}`))
	if d.Err != nil || d.Outcome != OutcomeUnregistered || d.Action != "unregister" {
		t.Fatalf("unregister: outcome %s err %v", d.Outcome, d.Err)
	}
	if _, ok := eng.get("c1"); ok {
		t.Fatal("c1 still registered after poststop")
	}

	post := newHook(ocihook.StagePoststop, sock, hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	d = post.Run(deadline(t, 5*time.Second), strings.NewReader(`{"id":"c1","status":"stopped"}`))
	if d.Err != nil || d.Outcome != OutcomeNotRegistered || d.ExitCode() != 0 {
		t.Fatalf("second unregister: outcome %s err %v", d.Outcome, d.Err)
	}
}

// At createContainer the state's pid is the init's pid inside the
// container's pid namespace: the hook does not pass it on, and asks the
// engine to check the claim against its own cgroup instead.
func TestRunCreateContainerNamesItself(t *testing.T) {
	cg, _ := newTestCgroup(t)
	eng, sock := startFakeEngine(t)
	b := harness.OCIBundle(t, map[string]string{ocihook.CRIONamespace: "shop"}, cg.Path)
	h := newHook(ocihook.StageCreateContainer, sock, hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	d := h.Run(deadline(t, 5*time.Second), strings.NewReader(harness.OCIState("c2", "creating", 1, b, nil)))
	if d.Err != nil || d.Outcome != OutcomeRegistered {
		t.Fatalf("register: outcome %s err %v", d.Outcome, d.Err)
	}
	got, _ := eng.get("c2")
	if got.Pid != 0 || !got.PeerInContainer {
		t.Errorf("createContainer registration has pid %d, peerInContainer %v; want 0 and true", got.Pid, got.PeerInContainer)
	}
}

func TestRunFailureModes(t *testing.T) {
	cg, _ := newTestCgroup(t)
	pid := cg.Start(t, "sleep", "600").Process.Pid
	refusing, refusingSock := startFakeEngine(t)
	refusing.failWith = errors.New("policy store is read-only")
	cannot, cannotSock := startFakeEngine(t)
	cannot.failWith = fmt.Errorf("register container x: %w: map cgroup_rules holds its capacity of 4 entries", api.ErrCannotEnforce)
	missingSock := filepath.Join(t.TempDir(), "absent.sock")
	silentSock := harness.SilentSocket(t)

	tests := []struct {
		name      string
		socket    string
		cfg       hookconfig.Config
		namespace string
		stdin     string // default: a valid creating state
		timeout   time.Duration
		outcome   string
		errHas    string
	}{
		{name: "engine down, open", socket: missingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen}}, outcome: OutcomeFailOpen, errHas: "connect to engine"},
		{name: "engine down, closed", socket: missingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}}, outcome: OutcomeFailClosed, errHas: "connect to engine"},
		{name: "engine down, closed, engine namespace", socket: missingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}}, namespace: registrar.DefaultEngineNamespace, outcome: OutcomeFailOpen},
		{name: "engine down, closed, listed namespace", socket: missingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed, FailOpenNamespaces: []string{"kube-system"}}}, namespace: "kube-system", outcome: OutcomeFailOpen},
		{name: "engine cannot enforce, open", socket: cannotSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen}}, namespace: "shop", outcome: OutcomeFailClosed, errHas: "capacity of 4"},
		{name: "engine cannot enforce, open, engine namespace", socket: cannotSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen}}, namespace: registrar.DefaultEngineNamespace, outcome: OutcomeFailOpen, errHas: "capacity of 4"},
		{name: "engine cannot enforce, open, listed namespace", socket: cannotSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen, FailOpenNamespaces: []string{"kube-system"}}}, namespace: "kube-system", outcome: OutcomeFailOpen, errHas: "capacity of 4"},
		{name: "engine refuses otherwise, open", socket: refusingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen}}, outcome: OutcomeFailOpen, errHas: "policy store is read-only"},
		{name: "engine refuses, closed", socket: refusingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}}, outcome: OutcomeFailClosed, errHas: "policy store is read-only"},
		{name: "engine never answers, closed", socket: silentSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}}, timeout: 300 * time.Millisecond, outcome: OutcomeFailClosed, errHas: "before the hook's"},
		{name: "engine never answers, open", socket: silentSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen}}, timeout: 300 * time.Millisecond, outcome: OutcomeFailOpen, errHas: "before the hook's"},
		{name: "malformed stdin, closed", socket: refusingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}}, stdin: `{"id":`, outcome: OutcomeFailClosed, errHas: "malformed OCI state"},
		{name: "empty stdin, open", socket: refusingSock, cfg: hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailOpen}}, stdin: " ", outcome: OutcomeFailOpen, errHas: "empty OCI state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := harness.OCIBundle(t, map[string]string{ocihook.CRIONamespace: tt.namespace}, "")
			stdin := tt.stdin
			if stdin == "" {
				stdin = harness.OCIState("c-"+strings.ReplaceAll(tt.name, " ", "-"), "creating", pid, b, nil)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			h := newHook(ocihook.StageCreateRuntime, tt.socket, tt.cfg)
			d := h.Run(deadline(t, timeout), strings.NewReader(stdin))
			if d.Outcome != tt.outcome {
				t.Fatalf("outcome = %s (%s), want %s; err %v", d.Outcome, d.Reason, tt.outcome, d.Err)
			}
			if d.Err == nil || !strings.Contains(d.Err.Error(), tt.errHas) {
				t.Fatalf("err = %v, want one containing %q", d.Err, tt.errHas)
			}
			wantExit := 0
			if tt.outcome == OutcomeFailClosed {
				wantExit = 1
			}
			if d.ExitCode() != wantExit {
				t.Errorf("exit code = %d, want %d", d.ExitCode(), wantExit)
			}
			line := d.StderrLine()
			if tt.outcome == OutcomeFailClosed {
				if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") || !strings.Contains(line, "refusing container") {
					t.Errorf("stderr line = %q, want one line saying why", line)
				}
			} else if line != "" {
				t.Errorf("fail-open printed %q on stderr", line)
			}
		})
	}
}

// TestRunStdinNeverCloses: a stdin that never ends fails the run closed on
// its deadline, whether it is a plain reader or a pipe (what runtimes
// pass), which is read in reads bounded by poll(2).
func TestRunStdinNeverCloses(t *testing.T) {
	for name, stdin := range map[string]func(t *testing.T) io.Reader{
		"reader": func(t *testing.T) io.Reader {
			r, w := io.Pipe()
			t.Cleanup(func() { w.Close() })
			return r
		},
		"pipe": func(t *testing.T) io.Reader {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return r
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, sock := startFakeEngine(t)
			h := newHook(ocihook.StageCreateContainer, sock, hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
			d := h.Run(deadline(t, 200*time.Millisecond), stdin(t))
			if d.Outcome != OutcomeFailClosed || !errors.Is(d.Err, context.DeadlineExceeded) || !strings.Contains(d.Err.Error(), "read OCI state") {
				t.Fatalf("outcome %s err %v, want fail-closed on the stdin deadline", d.Outcome, d.Err)
			}
		})
	}
}

// TestRunBadInput checks the hook's own reading of its input, which it does
// when the engine does not take the run whole (the engine's checks of a
// forwarded run are tested against the real engine in test/hook).
func TestRunBadInput(t *testing.T) {
	cg, _ := newTestCgroup(t)
	pid := cg.Start(t, "sleep", "600").Process.Pid
	_, sock := startLegacyFakeEngine(t)
	good := harness.OCIBundle(t, nil, "")
	dead := harness.ExitedPID(t)
	tests := []struct {
		name   string
		stage  ocihook.Stage
		stdin  string
		errHas []string
	}{
		{"missing config.json", ocihook.StageCreateRuntime, harness.OCIState("c1", "creating", pid, t.TempDir(), nil), []string{"config.json", "no such file"}},
		{"bundle does not exist", ocihook.StageCreateRuntime, harness.OCIState("c1", "creating", pid, "/nonexistent-bundle", nil), []string{"/nonexistent-bundle/config.json"}},
		{"pid gone", ocihook.StageCreateRuntime, harness.OCIState("c1", "creating", dead, good, nil), []string{fmt.Sprintf("/proc/%d/cgroup", dead), "process does not exist", "no linux.cgroupsPath"}},
		{"unknown cgroup", ocihook.StageCreateRuntime, harness.OCIState("c1", "creating", dead, harness.OCIBundle(t, nil, "/holdfast-no-such-cgroup/x"), nil), []string{"unknown cgroup", "/holdfast-no-such-cgroup/x"}},
		{"bad labels", ocihook.StageCreateRuntime, harness.OCIState("c1", "creating", pid, good, map[string]string{ocihook.CRIOLabels: "{"}), []string{ocihook.CRIOLabels}},
		{"running at create", ocihook.StageCreateContainer, harness.OCIState("c1", "running", 1, good, nil), []string{`status "running"`}},
		{"no pid at createRuntime", ocihook.StageCreateRuntime, harness.OCIState("c1", "creating", 0, good, nil), []string{"no pid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(tt.stage, sock, hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
			d := h.Run(deadline(t, 5*time.Second), strings.NewReader(tt.stdin))
			if d.Outcome != OutcomeFailClosed || d.Err == nil {
				t.Fatalf("outcome %s err %v, want fail-closed with an error", d.Outcome, d.Err)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(d.Err.Error(), s) {
					t.Errorf("error %q does not mention %q", d.Err, s)
				}
			}
		})
	}
}

func TestPoststopEngineDown(t *testing.T) {
	h := newHook(ocihook.StagePoststop, filepath.Join(t.TempDir(), "absent.sock"), hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	d := h.Run(deadline(t, 5*time.Second), strings.NewReader(`{"id":"c9","status":"stopped"}`))
	if d.Outcome != OutcomeUnregisterErr || d.ExitCode() != 0 || !strings.Contains(d.StderrLine(), "could not unregister container c9") {
		t.Fatalf("outcome %s exit %d stderr %q", d.Outcome, d.ExitCode(), d.StderrLine())
	}
}

func TestAppendLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sub", "hook.log")
	decisions := []*Decision{
		{Time: time.Now(), Stage: ocihook.StageCreateRuntime, Action: "register", Outcome: OutcomeRegistered, Container: api.Container{ID: "a", Namespace: "ns", Policies: []string{"p"}}, Cgroup: Cgroup{ID: 7, Path: "/x"}},
		{Time: time.Now(), Stage: ocihook.StageCreateRuntime, Action: "register", Outcome: OutcomeFailOpen, Reason: "fail mode is open", Container: api.Container{ID: "b"}, Err: errors.New("connect\nrefused")},
	}
	for _, d := range decisions {
		if err := AppendLog(logPath, io.Discard, d); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("log has %d lines, want 2:\n%s", len(lines), data)
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["outcome"] != OutcomeRegistered || first["id"] != "a" || first["cgroupId"] != float64(7) {
		t.Errorf("first line = %v", first)
	}
	if second["outcome"] != OutcomeFailOpen || second["error"] != "connect\nrefused" || second["reason"] != "fail mode is open" {
		t.Errorf("second line = %v", second)
	}
	if err := AppendLog("none", io.Discard, decisions[0]); err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if err := AppendLog("-", &buf, decisions[0]); err != nil || !strings.Contains(buf.String(), `"outcome":"registered"`) {
		t.Fatalf("log to stderr: %q, %v", buf.String(), err)
	}
}

// A state that fits the hook's limit but not one engine request (a huge
// annotation) is not forwarded: the hook reads it and registers the old
// way, instead of the engine refusing an oversized request.
func TestRunStateTooLargeToForward(t *testing.T) {
	cg, _ := newTestCgroup(t)
	pid := cg.Start(t, "sleep", "600").Process.Pid
	eng, sock := startFakeEngine(t)
	b := harness.OCIBundle(t, map[string]string{ocihook.CRIONamespace: "shop"}, "")
	big := map[string]string{"padding": strings.Repeat("x", api.MaxMessageSize-512)}
	h := newHook(ocihook.StageCreateRuntime, sock, hookconfig.Config{Settings: registrar.Settings{FailMode: registrar.FailClosed}})
	d := h.Run(deadline(t, 10*time.Second), strings.NewReader(harness.OCIState("big", "creating", pid, b, big)))
	if d.Err != nil || d.Outcome != OutcomeRegistered {
		t.Fatalf("outcome %s err %v", d.Outcome, d.Err)
	}
	var steps []string
	for _, s := range d.Steps {
		steps = append(steps, s.Name)
	}
	if got := strings.Join(steps, ","); got != "state,config,cgroup,engine" {
		t.Errorf("steps %s, want the hook's own reading and one engine call", got)
	}
	if _, ok := eng.get("big"); !ok {
		t.Error("engine has no registration for the container")
	}
}
