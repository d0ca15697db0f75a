package install

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	nriplugin "github.com/holdfast-dev/holdfast/nri-plugin"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// majorOf reads the containerd version a sample is for from its name.
func majorOf(t *testing.T, name string) int {
	switch {
	case strings.HasPrefix(name, "1.7-"):
		return 1
	case strings.HasPrefix(name, "2.x-"):
		return 2
	}
	t.Fatalf("sample %s: name must start with 1.7- or 2.x-", name)
	return 0
}

func TestEnableNRIGolden(t *testing.T) {
	samples, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	wantPluginPath := map[string]string{
		"1.7-table-without-disable": "/usr/libexec/nri",
		"2.x-disabled":              "/opt/holdfast/nri",
	}
	for _, sample := range samples {
		name := strings.TrimSuffix(filepath.Base(sample), ".toml")
		if name == "1.7-version1" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			major := majorOf(t, name)
			in, err := os.ReadFile(sample)
			if err != nil {
				t.Fatal(err)
			}
			out, changes, err := EnableNRI(in, major)
			if err != nil {
				t.Fatalf("EnableNRI: %v", err)
			}
			golden := strings.TrimSuffix(sample, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("EnableNRI output differs from %s:\n%s", golden, out)
			}
			if changed := !bytes.Equal(in, out); changed != (len(changes) > 0) {
				t.Errorf("config changed: %v, but reported changes %q", changed, changes)
			}

			nri, err := ReadNRI(out, major)
			if err != nil {
				t.Fatal(err)
			}
			if nri.Disabled {
				t.Error("NRI is still disabled in the result")
			}
			if p := wantPluginPath[name]; p != "" && nri.PluginPath != p {
				t.Errorf("plugin path = %q, want %q", nri.PluginPath, p)
			}

			again, changes2, err := EnableNRI(out, major)
			if err != nil || !bytes.Equal(again, out) || len(changes2) != 0 {
				t.Errorf("second EnableNRI is not a no-op: changes %q, err %v\n%s", changes2, err, again)
			}

			reverted, _, err := RevertNRI(out)
			if err != nil {
				t.Fatalf("RevertNRI: %v", err)
			}
			if !bytes.Equal(reverted, in) {
				t.Errorf("RevertNRI did not restore the original:\n%s", reverted)
			}
		})
	}
}

func TestEnableNRIRefuses(t *testing.T) {
	v1, err := os.ReadFile("testdata/1.7-version1.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		major  int
		config string
		want   string
	}{
		{"version 1 config", 1, string(v1), "migrate it first"},
		{"broken toml", 1, "version = 2\n[plugins\n", "parse containerd config"},
		{"multi-line disabled_plugins", 2, "version = 2\ndisabled_plugins = [\n  \"io.containerd.nri.v1.nri\",\n]\n", "spans several lines"},
		{"dotted key disable on 2.x", 2, "version = 3\n[plugins]\n  \"io.containerd.nri.v1.nri\".disable = true\n", "layout not understood"},
		{"dotted key on 1.7", 1, "version = 2\n[plugins]\n  \"io.containerd.nri.v1.nri\".disable = true\n", "edit it by hand"},
		{"table twice", 1, "version = 2\n[plugins.\"io.containerd.nri.v1.nri\"]\n[plugins.'io.containerd.nri.v1.nri']\n", "parse containerd config"},
		{"bad major", 0, "version = 2\n", "invalid containerd major version 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := EnableNRI([]byte(tc.config), tc.major)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EnableNRI error = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestInstallUninstall(t *testing.T) {
	dir := t.TempDir()
	pluginDir := filepath.Join(dir, "opt", "nri", "plugins")
	confDir := filepath.Join(dir, "etc", "nri", "conf.d")
	configPath := filepath.Join(dir, "etc", "containerd", "config.toml")
	original := "version = 2\n\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n" +
		"  plugin_path = \"" + pluginDir + "\"\n  plugin_config_path = \"" + confDir + "\"\n"
	if err := linux.WriteFileAtomic(configPath, []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "holdfast-nri")
	if err := os.WriteFile(binary, []byte("#!/bin/sh\necho plugin\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{ConfigPath: configPath, Major: 1, PluginBinary: binary,
		Plugin: nriplugin.Config{EngineSocket: "/run/holdfast/engine.sock", Settings: registrar.Settings{FailMode: registrar.FailClosed, FailOpenNamespaces: []string{"kube-system"}}}}
	ctx := context.Background()

	changes, err := Install(ctx, o)
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	t.Logf("install: %v", changes)
	config, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	if nri, err := ReadNRI(config, 1); err != nil || nri.Disabled {
		t.Fatalf("after install NRI settings %+v, %v", nri, err)
	}
	if backup, err := os.ReadFile(configPath + ".holdfast.bak"); err != nil || string(backup) != original {
		t.Errorf("backup = %q, %v; want the original config", backup, err)
	}
	plugin := filepath.Join(pluginDir, "10-holdfast")
	if st, err := os.Stat(plugin); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("plugin %s not installed executable: %v", plugin, err)
	}
	conf, err := os.ReadFile(filepath.Join(confDir, "10-holdfast.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := nriplugin.ParseConfig(string(conf))
	if err != nil {
		t.Errorf("plugin config %q does not parse: %v", conf, err)
	}
	if got.FailMode != registrar.FailClosed || got.EngineSocket != "/run/holdfast/engine.sock" || len(got.FailOpenNamespaces) != 1 {
		t.Errorf("plugin config lacks the settings:\n%s", conf)
	}
	entries, err := os.ReadDir(pluginDir)
	if err != nil || len(entries) != 1 {
		t.Errorf("plugin dir holds %v (%v), want only the plugin: NRI refuses stray files", entries, err)
	}

	if changes, err := Install(ctx, o); err != nil || registrar.Changed(changes) {
		t.Errorf("second Install changed %v (err %v), want nothing", changes, err)
	}

	changes, err = Uninstall(ctx, o)
	if err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	t.Logf("uninstall: %v", changes)
	if config, err := os.ReadFile(configPath); err != nil || string(config) != original {
		t.Errorf("after uninstall config = %q, %v; want the original", config, err)
	}
	for _, p := range []string{plugin, filepath.Join(confDir, "10-holdfast.conf")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there after uninstall (%v)", p, err)
		}
	}
	if changes, err := Uninstall(ctx, o); err != nil || registrar.Changed(changes) {
		t.Errorf("second Uninstall changed %v (err %v), want nothing", changes, err)
	}
}

func TestInstallWithoutConfig(t *testing.T) {
	dir := t.TempDir()
	configPath := filepath.Join(dir, "config.toml")
	binary := filepath.Join(dir, "holdfast-nri")
	if err := os.WriteFile(binary, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{ConfigPath: configPath, Major: 1, PluginBinary: binary,
		PluginDir: filepath.Join(dir, "plugins"), PluginConfigDir: filepath.Join(dir, "conf.d")}
	if _, err := Install(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatalf("1.7 without a config: none written: %v", err)
	}
	if nri, err := ReadNRI(config, 1); err != nil || nri.Disabled {
		t.Errorf("written config leaves NRI off: %+v %v\n%s", nri, err, config)
	}
	if _, err := Uninstall(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(configPath); !os.IsNotExist(err) {
		t.Errorf("uninstall left the config holdfast created (%v)", err)
	}
}

func TestOptionsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Idx: "7", PluginBinary: "x"}, `"7"`},
		{Options{Plugin: nriplugin.Config{Settings: registrar.Settings{FailMode: "maybe"}}, PluginBinary: "x"}, `"maybe"`},
		{Options{Plugin: nriplugin.Config{EngineSocket: "rel.sock"}, PluginBinary: "x"}, `"rel.sock"`},
		{Options{}, "no holdfast-nri binary"},
		{Options{PluginBinary: "/nonexistent/holdfast-nri"}, "/nonexistent/holdfast-nri"},
	} {
		if _, err := Install(ctx, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Install(%+v) error = %v, want one naming %s", tc.o, err, tc.want)
		}
	}
}

func TestContainerdMajor(t *testing.T) {
	dir := t.TempDir()
	fake := func(output string) string {
		p := filepath.Join(dir, strings.NewReplacer(" ", "_", "/", "_").Replace(output))
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho '"+output+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		output string
		major  int
		err    string
	}{
		{"containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182", 1, ""},
		{"containerd github.com/containerd/containerd/v2 v2.4.2 1d8a8a7b", 2, ""},
		{"containerd github.com/containerd/containerd/v2 2.4.2+unknown ", 2, ""},
		{"containerd containerd.io 1.6.33 d2d58213f83a351ca8f528a95fbd145f5654e957", 0, "has no NRI support"},
		{"something else", 0, "no version"},
	} {
		major, err := ContainerdMajor(context.Background(), fake(tc.output))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error = %v, want %q", tc.output, err, tc.err)
			}
			continue
		}
		if err != nil || major != tc.major {
			t.Errorf("%q: major = %d, %v; want %d", tc.output, major, err, tc.major)
		}
	}
}

// The shipped examples must say what they claim.
func TestDeployExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "containerd")
	for file, major := range map[string]int{"containerd-1.7-nri.toml": 1, "containerd-2.x-nri.toml": 2} {
		config, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		nri, err := ReadNRI(config, major)
		if err != nil || nri.Disabled || nri.PluginPath != DefaultPluginPath || nri.SocketPath != DefaultSocketPath {
			t.Errorf("%s: %+v, %v; want NRI enabled at the default paths", file, nri, err)
		}
		if _, changes, err := EnableNRI(config, major); err != nil || len(changes) != 0 {
			t.Errorf("%s: install would still change %q (%v)", file, changes, err)
		}
	}
	conf, err := os.ReadFile(filepath.Join(dir, "10-holdfast.conf"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nriplugin.ParseConfig(string(conf))
	if err != nil || c.FailMode != registrar.FailClosed || c.EngineSocket == "" || c.EngineNamespace != registrar.DefaultEngineNamespace {
		t.Errorf("10-holdfast.conf: %+v, %v", c, err)
	}
}
