package fastpath

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
)

// The test binary stands in for holdfast when its first argument is the
// handoff command: it records its arguments and stdin and exits 7.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HandoffCommand {
		var stdin bytes.Buffer
		stdin.ReadFrom(os.Stdin)
		record, _ := json.Marshal(map[string]any{"args": os.Args[1:], "stdin": stdin.String()})
		os.WriteFile(os.Getenv("FASTPATH_RECORD"), record, 0o600)
		os.Exit(7)
	}
	if os.Getenv("FASTPATH_HELPER") == "handoff" {
		os.Exit(handoffHelper())
	}
	os.Exit(m.Run())
}

const state = `{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b"}`

// engine answers every request with answer and records the requests.
func engine(t *testing.T, answer string) (socket string, requests chan string) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	requests = make(chan string, 10)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(conn).ReadString('\n')
			requests <- line
			conn.Write([]byte(answer + "\n"))
			conn.Close()
		}
	}()
	return socket, requests
}

// stdinOf is a pipe holding data, as a runtime passes the state (a file
// for data larger than a pipe holds).
func stdinOf(t *testing.T, data string) *os.File {
	t.Helper()
	if len(data) > 32<<10 {
		p := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(data)
	w.Close()
	t.Cleanup(func() { r.Close() })
	return r
}

func logged(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(data, &line); err != nil {
		t.Fatalf("log %q: %v", data, err)
	}
	return line
}

// TestRunTakenByEngine: a run the engine answers is done here, logged
// with what the engine said, and the request carries the state untouched.
func TestRunTakenByEngine(t *testing.T) {
	for _, tt := range []struct {
		name, stage, answer string
		want                map[string]any
	}{
		{"registered", "createRuntime", `{"container":{"id":"c1","cgroupId":99,"cgroupPath":"/k/c1","namespace":"shop","pod":"web","container":"main","policies":["locked"],"labels":{"a":"b"}},"stepsUs":{"request":12,"config":80}}`,
			map[string]any{"stepsUs.engine.request": 12.0, "stepsUs.engine.config": 80.0, "stage": "createRuntime", "action": "register", "outcome": "registered", "id": "c1", "namespace": "shop", "pod": "web", "container": "main", "cgroupId": 99.0, "cgroupPath": "/k/c1", "cgroupFrom": "engine", "policies": []any{"locked"}}},
		{"unregistered", "poststop", `{"removed":{"id":"c1","cgroupId":99,"namespace":"shop","pod":"web","container":"main"}}`,
			map[string]any{"stage": "poststop", "action": "unregister", "outcome": "unregistered", "id": "c1", "namespace": "shop", "pod": "web", "container": "main", "cgroupId": 99.0}},
		// An engine from before "removed" names nothing.
		{"unregistered by an older engine", "poststop", `{}`, map[string]any{"stage": "poststop", "action": "unregister", "outcome": "unregistered", "id": "c1", "namespace": nil}},
		// One hooks.d entry lists createRuntime and poststop with --stage
		// createRuntime: a delete is a stopped state at that stage.
		{"stopped at a create stage", "createRuntime", `{}`, map[string]any{"stage": "createRuntime", "action": "unregister", "outcome": "unregistered", "id": "c1"}},
		{"not registered", "poststop", `{"error":"unregister c1: container not registered","code":"not-found","notFound":true}`,
			map[string]any{"stage": "poststop", "action": "unregister", "outcome": "not-registered", "id": "c1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			socket, requests := engine(t, tt.answer)
			logPath := filepath.Join(t.TempDir(), "hook.log")
			var stderr bytes.Buffer
			code, h := Run(time.Now(), []string{"--stage", tt.stage, "--socket", socket, "--log", logPath, "--config", writeConfig(t, `{}`)}, stdinOf(t, state), &stderr)
			if code != 0 || h != nil {
				t.Fatalf("Run = %d, handoff %+v; stderr %s", code, h, stderr.String())
			}
			if req := <-requests; req != `{"op":"hook","hook":{"stage":"`+tt.stage+`","state":`+state+"}}\n" {
				t.Errorf("request %q", req)
			}
			line := logged(t, logPath)
			for k, v := range tt.want {
				got, _ := json.Marshal(line[k])
				if step, ok := strings.CutPrefix(k, "stepsUs."); ok {
					// The engine's own steps, as it timed them.
					steps, _ := line["stepsUs"].(map[string]any)
					got, _ = json.Marshal(steps[step])
				}
				if string(got) != mustJSON(v) {
					t.Errorf("log %s = %s, want %s (line %v)", k, got, mustJSON(v), line)
				}
			}
			steps, _ := line["stepsUs"].(map[string]any)
			if _, ok := steps["engine"]; !ok {
				t.Errorf("log line %v times no engine step", line)
			}
		})
	}
}

func mustJSON(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

func writeConfig(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "holdfast-oci-hook.json")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunHandsOver: every run the engine did not take goes to the full
// hook with the state read, and nothing is logged here.
func TestRunHandsOver(t *testing.T) {
	refusing, _ := engine(t, `{"error":"register c1: no policy store","code":"cannot-enforce"}`)
	garbled, _ := engine(t, `{"container":`)
	silent := filepath.Join(t.TempDir(), "silent.sock")
	l, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	huge := `{"id":"c1","x":"` + strings.Repeat("a", oneshot.MaxMessageSize-600) + `"}`
	for _, tt := range []struct {
		name, socket, stdin, why string
		extra                    []string
		cannotEnforce            bool
	}{
		{"engine down", filepath.Join(t.TempDir(), "absent.sock"), state, "connect to engine", nil, false},
		{"engine cannot enforce", refusing, state, "no policy store", nil, true},
		{"garbled answer", garbled, state, "read", nil, false},
		// The engine gets its share of the deadline, and no more.
		{"engine silent past its share", silent, state, "deadline", []string{"--timeout", "3s", "--engine-timeout", "100ms"}, false},
		{"state not JSON", refusing, `{"id":`, "not valid JSON", nil, false},
		{"empty state", refusing, ``, "not valid JSON", nil, false},
		{"state too large for a request", refusing, huge, "too large", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "hook.log")
			cfgPath := writeConfig(t, `{}`)
			args := append([]string{"--stage", "createRuntime", "--socket", tt.socket, "--log", logPath, "--config", cfgPath}, tt.extra...)
			start := time.Now()
			code, h := Run(start, args, stdinOf(t, tt.stdin), new(bytes.Buffer))
			took := time.Since(start)
			if code != 0 || h == nil {
				t.Fatalf("Run = %d, handoff %v; want a handoff", code, h)
			}
			if took > 2*time.Second {
				t.Errorf("Run took %v: the engine's share is 100ms and the deadline 2s or more", took)
			}
			if h.CannotEnforce != tt.cannotEnforce {
				t.Errorf("handoff says cannot-enforce %v, want %v", h.CannotEnforce, tt.cannotEnforce)
			}
			if !strings.Contains(h.Why.Error(), tt.why) {
				t.Errorf("handoff because %v, want %q in it", h.Why, tt.why)
			}
			// The full hook reads the same config file, wherever holdfast is.
			wantArgs := append([]string{"--config", cfgPath}, args...)
			if string(h.State) != tt.stdin || !h.Started.Equal(start) || strings.Join(h.Args, " ") != strings.Join(wantArgs, " ") {
				t.Errorf("handoff (args %q) loses the run (state of %d bytes)", h.Args, len(h.State))
			}
			if _, err := os.Stat(logPath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the fast path logged a run it handed over: %v", err)
			}
		})
	}
}

// TestRunStdinNeverCloses: a runtime that never closes stdin costs the
// fast path its deadline, no more, and with no state there is nothing to
// hand over: the fail mode decides here, as the full hook would.
func TestRunStdinNeverCloses(t *testing.T) {
	for _, mode := range []string{"open", "closed"} {
		t.Run(mode, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			w.WriteString(`{"id":"c1"`)
			logPath := filepath.Join(t.TempDir(), "hook.log")
			start := time.Now()
			code, h := Run(start, []string{"--stage", "createRuntime", "--timeout", "200ms", "--fail-mode", mode, "--log", logPath, "--config", writeConfig(t, `{}`)}, r, new(bytes.Buffer))
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("Run took %v past a 200ms deadline", took)
			}
			want := map[string]int{"open": 0, "closed": 1}[mode]
			if code != want || h != nil {
				t.Fatalf("Run = %d, handoff %+v; want %d and no handoff", code, h, want)
			}
			if line := logged(t, logPath); line["outcome"] != "fail-"+mode || !strings.Contains(fmt.Sprint(line["error"]), "deadline") {
				t.Errorf("logged %v", line)
			}
		})
	}
}

// TestRunBrokenCommandLine: a bad flag or config file is the usage error
// the full hook would print, and nothing is handed over.
func TestRunBrokenCommandLine(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no stage", []string{"--config", writeConfig(t, `{}`)}, "--stage"},
		{"bad fail mode", []string{"--stage", "createRuntime", "--fail-mode", "maybe", "--config", writeConfig(t, `{}`)}, "unknown fail mode"},
		{"misspelt config key", []string{"--stage", "createRuntime", "--config", writeConfig(t, `{"failureMode":"closed"}`)}, "unknown field"},
		{"relative socket", []string{"--stage", "createRuntime", "--socket", "engine.sock", "--config", writeConfig(t, `{}`)}, "not an absolute path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code, h := Run(time.Now(), tt.args, stdinOf(t, state), &stderr)
			if code != exitUsage || h != nil || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("Run = %d, handoff %v, stderr %q; want %d and %q", code, h, stderr.String(), exitUsage, tt.want)
			}
		})
	}
}

// TestHandoffExec: the process becomes the full hook, given the start
// time, the hook's arguments after "--" and the state on its stdin.
func TestHandoffExec(t *testing.T) {
	for _, tt := range []struct {
		name  string
		state *string
	}{
		{"state read", ptr(state)},
		{"stdin left as it is", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			record := filepath.Join(t.TempDir(), "record.json")
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "FASTPATH_HELPER=handoff", "FASTPATH_RECORD="+record)
			if tt.state != nil {
				cmd.Env = append(cmd.Env, "FASTPATH_STATE="+*tt.state)
			}
			cmd.Stdin = strings.NewReader("the runtime's pipe")
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 7 {
				t.Fatalf("helper: %v, want the stand-in holdfast's exit 7\n%s", err, out)
			}
			var got struct {
				Args  []string
				Stdin string
			}
			data, err := os.ReadFile(record)
			if err != nil {
				t.Fatal(err)
			}
			json.Unmarshal(data, &got)
			// The run's age at the handoff, on the monotonic clock.
			if len(got.Args) != 6 || got.Args[0] != HandoffCommand || got.Args[1] != ElapsedFlag || strings.Join(got.Args[3:], " ") != "-- --stage createRuntime" {
				t.Fatalf("full hook ran with %q", got.Args)
			}
			if ns, err := strconv.ParseInt(got.Args[2], 10, 64); err != nil || time.Duration(ns) < helperAge || time.Duration(ns) > helperAge+time.Minute {
				t.Errorf("elapsed %s, want at least the run's %v (err %v)", got.Args[2], helperAge, err)
			}
			wantStdin := "the runtime's pipe"
			if tt.state != nil {
				wantStdin = *tt.state
			}
			if got.Stdin != wantStdin {
				t.Errorf("full hook read %q on stdin, want %q", got.Stdin, wantStdin)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// helperAge is how old the helper's run is when it hands over.
const helperAge = 3 * time.Second

func handoffHelper() int {
	h := &Handoff{Started: time.Now().Add(-helperAge), Args: []string{"--stage", "createRuntime"}, Stage: "createRuntime"}
	h.Config.HoldfastBinary = os.Args[0]
	if s, ok := os.LookupEnv("FASTPATH_STATE"); ok {
		h.State = []byte(s)
	}
	err := h.Exec()
	os.Stderr.WriteString("exec returned: " + err.Error())
	return 1
}

// TestHandoffFail: without a holdfast binary to hand over to, the fail
// mode alone decides; poststop never refuses.
func TestHandoffFail(t *testing.T) {
	cannot, _ := engine(t, `{"error":"register c1: map full","code":"cannot-enforce"}`)
	stopped := strings.Replace(state, "creating", "stopped", 1)
	for _, tt := range []struct {
		name, stage, mode, state, socket, outcome, errHas string
		code                                              int
	}{
		{"closed refuses", "createRuntime", "closed", state, "", "fail-closed", "connect to engine", 1},
		{"open starts", "createRuntime", "open", state, "", "fail-open", "connect to engine", 0},
		{"cannot enforce refuses when open", "createRuntime", "open", state, cannot, "fail-closed", "map full", 1},
		{"poststop", "poststop", "closed", state, "", "unregister-failed", "connect to engine", 0},
		// The installed entry runs deletes at --stage createRuntime.
		{"stopped at a create stage", "createRuntime", "closed", stopped, "", "unregister-failed", "connect to engine", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			logPath := filepath.Join(dir, "hook.log")
			socket := tt.socket
			if socket == "" {
				socket = filepath.Join(dir, "absent.sock")
			}
			var stderr bytes.Buffer
			code, h := Run(time.Now(), []string{"--stage", tt.stage, "--socket", socket, "--log", logPath,
				"--fail-mode", tt.mode, "--holdfast-binary", filepath.Join(dir, "no-holdfast"), "--config", writeConfig(t, `{}`)}, stdinOf(t, tt.state), &stderr)
			if h == nil {
				t.Fatalf("Run = %d without a handoff", code)
			}
			err := h.Exec()
			if err == nil {
				t.Fatal("Exec of a missing binary returned nil")
			}
			if code := h.Fail(err, &stderr); code != tt.code {
				t.Errorf("Fail = %d, want %d", code, tt.code)
			}
			line := logged(t, logPath)
			logErr := fmt.Sprint(line["error"])
			if line["outcome"] != tt.outcome || line["id"] != "c1" || !strings.Contains(logErr, "no-holdfast") || !strings.Contains(logErr, tt.errHas) {
				t.Errorf("logged %v, want outcome %s naming the missing binary and %q", line, tt.outcome, tt.errHas)
			}
			if tt.code != 0 && !strings.Contains(stderr.String(), "refusing container c1") {
				t.Errorf("stderr %q does not say the container is refused", stderr.String())
			}
		})
	}
}
