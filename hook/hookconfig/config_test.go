package hookconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Config
		wantErr string
	}{
		{
			name: "full",
			in:   `{"socket":"/run/x.sock","timeout":"1500ms","failMode":"closed","failOpenNamespaces":["kube-system"],"engineNamespace":"sec","log":"none"}`,
			want: Config{Socket: "/run/x.sock", Timeout: Duration(1500 * time.Millisecond), Settings: registrar.Settings{FailMode: registrar.FailClosed, FailOpenNamespaces: []string{"kube-system"}, EngineNamespace: "sec"}, Log: "none"},
		},
		{name: "empty object", in: `{}`, want: Config{}},
		{name: "misspelt field", in: `{"failureMode":"closed"}`, wantErr: `unknown field "failureMode"`},
		{name: "bad fail mode", in: `{"failMode":"shut"}`, wantErr: `unknown fail mode "shut"`},
		{name: "numeric timeout", in: `{"timeout":2}`, wantErr: `duration must be a string`},
		{name: "bad timeout", in: `{"timeout":"soon"}`, wantErr: `duration "soon"`},
		{name: "trailing data", in: `{} {}`, wantErr: `data after the document`},
		{name: "not json", in: `socket=/x`, wantErr: `malformed JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConfig(%s) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Socket != tt.want.Socket || got.Timeout != tt.want.Timeout || got.FailMode != tt.want.FailMode ||
				strings.Join(got.FailOpenNamespaces, ",") != strings.Join(tt.want.FailOpenNamespaces, ",") ||
				got.EngineNamespace != tt.want.EngineNamespace || got.Log != tt.want.Log {
				t.Fatalf("ParseConfig(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestConfigRoundTrip(t *testing.T) {
	in := Config{Socket: "/run/h.sock", Timeout: Duration(3 * time.Second), Settings: registrar.Settings{FailMode: registrar.FailClosed, FailOpenNamespaces: []string{"a", "b"}}}
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"timeout": "3s"`) {
		t.Errorf("timeout not written as a duration string:\n%s", data)
	}
	out, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Socket != in.Socket || out.Timeout != in.Timeout || out.FailMode != in.FailMode || len(out.FailOpenNamespaces) != 2 {
		t.Fatalf("round trip changed the config: %+v -> %+v", in, out)
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg, found, err := LoadConfigFile(filepath.Join(dir, "absent.json"))
	if err != nil || found {
		t.Fatalf("missing file: found=%v err=%v, want not found and no error", found, err)
	}
	if cfg.Socket != "" {
		t.Fatalf("missing file gave config %+v", cfg)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"failMode":"closed",`), 0o600)
	if _, found, err := LoadConfigFile(bad); err == nil || !found || !strings.Contains(err.Error(), bad) {
		t.Fatalf("malformed file: found=%v err=%v, want an error naming %s", found, err, bad)
	}
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"failMode":"closed"}`), 0o600)
	cfg, found, err = LoadConfigFile(good)
	if err != nil || !found || cfg.FailMode != registrar.FailClosed {
		t.Fatalf("good file: cfg=%+v found=%v err=%v", cfg, found, err)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if ok.EngineTimeout != ok.Timeout/2 || ok.StateDir != "/var/lib/holdfast" || ok.BPFDir != "/sys/fs/bpf/holdfast" {
		t.Fatalf("WithDefaults: engine timeout %v, state dir %q, bpf dir %q", time.Duration(ok.EngineTimeout), ok.StateDir, ok.BPFDir)
	}
	if ok.Socket != DefaultSocket || time.Duration(ok.Timeout) != DefaultTimeout || ok.FailMode != registrar.FailOpen || ok.EngineNamespace != registrar.DefaultEngineNamespace || ok.Log != DefaultLog {
		t.Fatalf("WithDefaults = %+v", ok)
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"relative socket", func(c *Config) { c.Socket = "run/h.sock" }, "not an absolute path"},
		{"negative timeout", func(c *Config) { c.Timeout = Duration(-time.Second) }, "not positive"},
		{"bad fail mode", func(c *Config) { c.FailMode = "maybe" }, "unknown fail mode"},
		{"empty namespace", func(c *Config) { c.FailOpenNamespaces = []string{"a", ""} }, "empty name"},
		{"relative log", func(c *Config) { c.Log = "hook.log" }, "log file"},
		{"engine timeout past the timeout", func(c *Config) { c.EngineTimeout = c.Timeout + 1 }, "engine timeout"},
		{"relative state dir", func(c *Config) { c.StateDir = "var/lib/holdfast" }, "state dir"},
		{"relative holdfast binary", func(c *Config) { c.HoldfastBinary = "holdfast" }, "holdfast binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestParseStage: the stages FromArgs accepts are ocihook's.
func TestParseStage(t *testing.T) {
	for _, s := range Stages {
		if _, err := ocihook.ParseStage(s); err != nil {
			t.Errorf("ParseStage(%q): %v", s, err)
		}
	}
	for _, s := range []ocihook.Stage{ocihook.StageCreateContainer, ocihook.StageCreateRuntime, ocihook.StagePoststop} {
		if !slices.Contains(Stages, string(s)) {
			t.Errorf("Stages %v lack %s", Stages, s)
		}
	}
	for _, s := range []string{"", "prestart", "CreateContainer"} {
		if _, err := ocihook.ParseStage(s); err == nil {
			t.Errorf("ParseStage(%q) accepted it", s)
		}
	}
}

// FuzzParseConfig: the config reader agrees with encoding/json (strict, one
// document) on every input: both refuse it, or both read the same Config.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"socket":"/run/holdfast/engine.sock","timeout":"2s","failMode":"open","failOpenNamespaces":["kube-system"],"engineNamespace":"holdfast-system","log":"/var/log/holdfast/oci-hook.log"}`,
		`{"engineTimeout":" 1500ms ","holdfastBinary":"/usr/bin/holdfast","stateDir":"/s","bpfDir":"/b"}`,
		`{}`, `null`, `{"SOCKET":"/x","FailMode":"closed"}`, `{"failOpenNamespaces":null}`, `{"failOpenNamespaces":[]}`,
		`{"failOpenNamespaces":["a"],"failOpenNamespaces":["b","c"]}`, `{"socket":null,"failMode":null,"log":null}`,
		`{"timeout":null}`, `{"timeout":5}`, `{"timeout":"5"}`, `{"timeout":"-1s"}`, `{"timeout":"2s","timeout":"3s"}`,
		`{"failureMode":"closed"}`, `{"socket":1}`, `{"socket":"/x"} {}`, `{"socket":"/x"}}`, `{"socket":`, `socket=/x`,
		`{"failMode":"sometimes"}`, `{"socket":"\u002fx\ud83d\ude00"}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want Config
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		wantErr := dec.Decode(&want)
		if wantErr == nil && strings.TrimLeft(string(data[dec.InputOffset():]), " \t\r\n") != "" {
			wantErr = errors.New("data after the document")
		}
		if wantErr == nil {
			wantErr = want.Settings.Validate()
		}
		got, err := ParseConfig(data)
		if (wantErr == nil) != (err == nil) {
			t.Fatalf("%q: encoding/json says %v, ParseConfig says %v", data, wantErr, err)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: encoding/json reads %+v, ParseConfig %+v", data, want, got)
		}
	})
}

// TestFromArgsConfigFile: the file read is returned, so the full hook can
// be told to read the same; none reads no file, and flags lie over it.
func TestFromArgsConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hook.json")
	if err := os.WriteFile(file, []byte(`{"socket":"/run/custom.sock","failMode":"closed"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		args     []string
		file     string
		socket   string
		failMode registrar.FailMode
	}{
		{"named file", []string{"--stage", "poststop", "--config", file}, file, "/run/custom.sock", registrar.FailClosed},
		{"flag over file", []string{"--stage", "poststop", "--config", file, "--fail-mode", "open"}, file, "/run/custom.sock", registrar.FailOpen},
		{"last --config wins", []string{"--stage", "poststop", "--config", NoConfigFile, "--config", file}, file, "/run/custom.sock", registrar.FailClosed},
		{"none", []string{"--stage", "poststop", "--config", NoConfigFile}, NoConfigFile, DefaultSocket, registrar.FailOpen},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stage, cfg, got, err := FromArgs(tt.args, new(bytes.Buffer))
			if err != nil || stage != "poststop" || got != tt.file || cfg.Socket != tt.socket || cfg.FailMode != tt.failMode {
				t.Errorf("FromArgs = %s, %+v, %q, %v; want file %q, socket %s, fail mode %s", stage, cfg, got, err, tt.file, tt.socket, tt.failMode)
			}
		})
	}
	if _, _, _, err := FromArgs([]string{"--stage", "poststop", "--config", filepath.Join(dir, "absent.json")}, new(bytes.Buffer)); err == nil {
		t.Error("a named config file that does not exist was accepted")
	}
}

// TestFromArgsHandedOver: the command line the fast path hands over (the
// config file it read put first) parses to the same stage and config.
func TestFromArgsHandedOver(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hook.json")
	if err := os.WriteFile(file, []byte(`{"socket":"/run/custom.sock","failMode":"closed","timeout":"3s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(other, []byte(`{"failMode":"open"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--stage", "createRuntime", "--config", file},
		{"--stage", "createRuntime", "--config", file, "--"},
		{"--stage=poststop", "--config=" + other, "--fail-mode", "closed"},
		{"--config", NoConfigFile, "--stage", "createContainer", "--socket", "/run/x.sock", "--"},
		{"-stage", "createRuntime", "-config", file, "-timeout", "1s", "--engine-timeout", "200ms"},
	} {
		stage, cfg, read, err := FromArgs(args, new(bytes.Buffer))
		if err != nil {
			t.Fatalf("FromArgs(%q): %v", args, err)
		}
		handed := append([]string{"--config", read}, args...)
		stage2, cfg2, read2, err := FromArgs(handed, new(bytes.Buffer))
		if err != nil || stage2 != stage || read2 != read || !reflect.DeepEqual(cfg2, cfg) {
			t.Errorf("FromArgs(%q) = %s %+v %s\nhanded over %q = %s %+v %s, %v", args, stage, cfg, read, handed, stage2, cfg2, read2, err)
		}
	}
}

// TestFromArgsInstalledLine: the installer's command line, read without
// the flag set, gives what the flags give: the same stage, config and
// file, and the same refusals.
func TestFromArgsInstalledLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "hook.json")
	if err := os.WriteFile(good, []byte(`{"socket":"/run/custom.sock","failMode":"closed","timeout":"3s","log":"none"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"socket":"relative.sock"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--config", good, "--stage", "createRuntime"},
		{"--config", good, "--stage", "poststop"},
		{"--config", filepath.Join(dir, "absent.json"), "--stage", "createRuntime"},
		{"--config", bad, "--stage", "createRuntime"},
		{"--config", good, "--stage", "prestart"},
		{"--config", NoConfigFile, "--stage", "createRuntime"},
		{"--config", "", "--stage", "createRuntime"},
	} {
		_, _, fast := installedArgs(args)
		stage, cfg, file, err := FromArgs(args, new(bytes.Buffer))
		wStage, wCfg, wFile, wErr := fromFlags(args, new(bytes.Buffer))
		if stage != wStage || !reflect.DeepEqual(cfg, wCfg) || file != wFile || (err == nil) != (wErr == nil) {
			t.Errorf("%q (read without flags: %v): FromArgs = %s, %+v, %q, %v; the flags give %s, %+v, %q, %v",
				args, fast, stage, cfg, file, err, wStage, wCfg, wFile, wErr)
		}
	}
	if _, _, ok := installedArgs([]string{"--config", good, "--stage", "createRuntime"}); !ok {
		t.Error("the installer's command line is not read without the flag set")
	}
}
