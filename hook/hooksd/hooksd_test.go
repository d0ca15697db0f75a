package hooksd

import (
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
	"github.com/holdfast-dev/holdfast/test/harness"
)

// fakeBinary stands in for the hook binary.
func fakeBinary(t *testing.T, content string) string {
	return harness.Executable(t, BinaryName, content)
}

func TestNewFile(t *testing.T) {
	bin := fakeBinary(t, "#!/bin/true\n")
	cfg := filepath.Join(filepath.Dir(bin), hookconfig.ConfigFileName)
	f, err := NewFile(bin, cfg, ocihook.StageCreateRuntime, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.Version != "1.0.0" || back.When.Always == nil || !*back.When.Always ||
		strings.Join(back.Stages, ",") != "createRuntime,poststop" ||
		strings.Join(back.Hook.Args, " ") != "holdfast-oci-hook --config "+cfg+" --stage createRuntime" ||
		back.Hook.Timeout == nil || *back.Hook.Timeout != 5 || back.Hook.Path != bin {
		t.Fatalf("hooks.d file:\n%s", data)
	}
	if _, err := NewFile(bin, cfg, ocihook.StagePoststop, time.Second); err == nil {
		t.Fatal("NewFile accepted poststop as the register stage")
	}
}

func TestValidate(t *testing.T) {
	bin := fakeBinary(t, "x")
	yes := true
	zero := 0
	good := func() File {
		return File{Version: Version, Hook: Hook{Path: bin}, When: When{Always: &yes}, Stages: []string{"createContainer", "poststop"}}
	}
	tests := []struct {
		name    string
		mutate  func(*File)
		wantErr string
	}{
		{"good", func(*File) {}, ""},
		{"annotation condition only", func(f *File) { f.When = When{Annotations: map[string]string{"^io\\.x$": ".*"}} }, ""},
		{"version", func(f *File) { f.Version = "0.1.0" }, "version"},
		{"no path", func(f *File) { f.Hook.Path = "" }, "no hook.path"},
		{"missing binary", func(f *File) { f.Hook.Path = bin + "-gone" }, "no such file"},
		{"relative path", func(f *File) { f.Hook.Path = "holdfast-oci-hook" }, "not absolute"},
		{"zero timeout", func(f *File) { f.Hook.Timeout = &zero }, "timeout"},
		{"no when", func(f *File) { f.When = When{} }, "no when condition"},
		{"bad regexp", func(f *File) { f.When = When{Commands: []string{"("}} }, "when.commands"},
		{"no stages", func(f *File) { f.Stages = nil }, "no stages"},
		{"unknown stage", func(f *File) { f.Stages = []string{"preStart"} }, `unknown stage "preStart"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good()
			tt.mutate(&f)
			err := f.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Parse([]byte(`{"version":"1.0.0","hook":{"path":"/x"},"when":{"always":true},"stage":["poststop"]}`)); err == nil {
		t.Fatal("Parse accepted a misspelt field")
	}
}

func TestInstallIdempotentAndUninstall(t *testing.T) {
	root := t.TempDir()
	o := Options{
		HooksDir:   filepath.Join(root, "hooks.d"),
		InstallDir: filepath.Join(root, "libexec"),
		Binary:     fakeBinary(t, "version 1"),
		Holdfast:   fakeBinary(t, "holdfast"),
		Config:     hookconfig.Config{Socket: "/run/test.sock", Settings: registrar.Settings{FailMode: registrar.FailClosed}, Timeout: hookconfig.Duration(time.Second)},
	}
	actions := func(cs []registrar.Change) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.Action)
		}
		return strings.Join(s, ",")
	}

	changes, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(changes); got != "created,created,created,created" {
		t.Fatalf("first install: %s", changes)
	}
	if changes[0].Path != filepath.Join(o.InstallDir, "holdfast") || changes[3].Path != filepath.Join(o.HooksDir, HookFileName) {
		t.Errorf("holdfast binary at %s, hooks.d file at %s", changes[0].Path, changes[3].Path)
	}
	data, _ := os.ReadFile(o.HookFile())
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("installed hooks.d file does not validate: %v", err)
	}
	if f.Hook.Path != o.BinaryPath() || f.Stages[0] != "createRuntime" {
		t.Fatalf("installed hooks.d file: %s", data)
	}
	cfg, found, err := hookconfig.LoadConfigFile(o.ConfigPath())
	if err != nil || !found || cfg.Socket != "/run/test.sock" || cfg.FailMode != registrar.FailClosed {
		t.Fatalf("installed config: %+v found=%v err=%v", cfg, found, err)
	}
	if fi, err := os.Stat(o.BinaryPath()); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v %v", fi, err)
	}

	changes, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(changes); got != "unchanged,unchanged,unchanged,unchanged" {
		t.Fatalf("second install: %s", changes)
	}

	o.Binary = fakeBinary(t, "version 2")
	o.Stage = ocihook.StageCreateContainer
	changes, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(changes); got != "unchanged,updated,unchanged,updated" {
		t.Fatalf("upgrade: %s", changes)
	}
	if b, _ := os.ReadFile(o.BinaryPath()); string(b) != "version 2" {
		t.Fatalf("binary not replaced: %q", b)
	}
	entries, _ := os.ReadDir(o.InstallDir)
	if len(entries) != 3 {
		t.Fatalf("install dir holds %d entries (temp files left?): %v", len(entries), entries)
	}

	changes, err = Uninstall(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(changes); got != "removed,removed,removed,removed" {
		t.Fatalf("uninstall: %s", changes)
	}
	changes, err = Uninstall(o)
	if err != nil || actions(changes) != "absent,absent,absent,absent" {
		t.Fatalf("second uninstall: %s %v", changes, err)
	}
}

func TestInstallRefusesBadInput(t *testing.T) {
	root := t.TempDir()
	base := Options{HooksDir: filepath.Join(root, "h"), InstallDir: filepath.Join(root, "i"), Binary: fakeBinary(t, "x")}
	notExec := filepath.Join(root, "plain")
	os.WriteFile(notExec, []byte("x"), 0o644)
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"no binary", func(o *Options) { o.Binary = "" }, "no hook binary"},
		{"missing binary", func(o *Options) { o.Binary = filepath.Join(root, "gone") }, "no such file"},
		{"not executable", func(o *Options) { o.Binary = notExec }, "not an executable"},
		{"poststop stage", func(o *Options) { o.Stage = ocihook.StagePoststop }, "want createContainer or createRuntime"},
		{"relative hooks dir", func(o *Options) { o.HooksDir = "hooks.d" }, "must be absolute"},
		{"bad fail mode", func(o *Options) { o.Config.FailMode = "ajar" }, "unknown fail mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.mutate(&o)
			if _, err := Install(o); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Install() = %v, want error containing %q", err, tt.wantErr)
			}
			if _, err := os.Stat(o.HookFile()); err == nil {
				t.Fatal("a refused install left a hooks.d file")
			}
		})
	}
}

// deploy/crio holds the files `holdfast install crio` writes with its
// defaults; they must not drift from the code.
func TestDeployExamplesMatchInstall(t *testing.T) {
	defaults := Options{}
	f, err := NewFile(defaults.BinaryPath(), defaults.ConfigPath(), ocihook.StageCreateRuntime, hookconfig.DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	want, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "deploy", "crio", HookFileName))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("deploy/crio/%s differs from what install writes:\n%s\nwant:\n%s", HookFileName, got, want)
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "crio", hookconfig.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hookconfig.ParseConfig(data)
	if err != nil {
		t.Fatalf("deploy/crio/%s: %v", hookconfig.ConfigFileName, err)
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		t.Fatalf("deploy/crio/%s: %v", hookconfig.ConfigFileName, err)
	}
	def := hookconfig.Config{}.WithDefaults()
	if cfg.Socket != def.Socket || cfg.Timeout != def.Timeout || cfg.FailMode != def.FailMode || cfg.EngineNamespace != def.EngineNamespace || cfg.Log != def.Log {
		t.Errorf("deploy/crio/%s does not show the defaults: %+v, defaults %+v", hookconfig.ConfigFileName, cfg, def)
	}
}
