// Package install sets containerd up for holdfast: it enables NRI in
// containerd's config where needed and installs holdfast-nri as a
// pre-registered plugin. Every config edit is marked and backed up, so
// Uninstall takes back exactly holdfast's changes. Both are idempotent.
//
// Only the holdfast command imports it.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	nriplugin "github.com/holdfast-dev/holdfast/nri-plugin"
)

// DefaultConfigPath is containerd's default config file.
const DefaultConfigPath = "/etc/containerd/config.toml"

// Options says what to install where. Zero values take the defaults.
type Options struct {
	// ConfigPath is containerd's config file (default DefaultConfigPath).
	ConfigPath string
	// Containerd is the binary asked for its version (default "containerd"
	// on PATH). Ignored when Major is set.
	Containerd string
	// Major is containerd's major version (1 or 2); 0 asks the binary and,
	// if there is none, goes by the config's version.
	Major int
	// PluginBinary is the holdfast-nri executable to install (Install only).
	PluginBinary string
	// Idx is the plugin's two-digit NRI index (default nriplugin.DefaultIdx).
	Idx string
	// Plugin goes into the plugin's config file, which containerd hands it.
	Plugin nriplugin.Config
	// PluginDir and PluginConfigDir override the config's (or NRI's
	// default) plugin_path and plugin_config_path.
	PluginDir       string
	PluginConfigDir string
}

func (o *Options) defaults() error {
	if o.ConfigPath == "" {
		o.ConfigPath = DefaultConfigPath
	}
	if o.Idx == "" {
		o.Idx = nriplugin.DefaultIdx
	}
	if err := nriplugin.CheckIdx(o.Idx); err != nil {
		return err
	}
	if _, err := nriplugin.ParseConfig(string(pluginConfig(*o))); err != nil {
		return err
	}
	return nil
}

// PluginFile is the pre-registered plugin's file name, NN-holdfast.
func (o Options) PluginFile() string { return o.Idx + "-" + nriplugin.Name }

// Install enables NRI and installs the plugin. It returns what it changed;
// nothing on a second run.
func Install(ctx context.Context, o Options) ([]registrar.Change, error) {
	config, existed, major, err := o.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("install containerd: %w", err)
	}
	if o.PluginBinary == "" {
		return nil, errors.New("install containerd: no holdfast-nri binary given")
	}
	plugin, err := os.ReadFile(o.PluginBinary)
	if err != nil {
		return nil, fmt.Errorf("install containerd: read plugin binary: %w", err)
	}
	edited, edits, err := EnableNRI(config, major)
	if err != nil {
		return nil, fmt.Errorf("install containerd: %s: %w", o.ConfigPath, err)
	}
	nri, err := ReadNRI(edited, major)
	if err != nil {
		return nil, fmt.Errorf("install containerd: %s: %w", o.ConfigPath, err)
	}

	var changes []registrar.Change
	if len(edits) > 0 {
		if existed {
			backup := o.ConfigPath + ".holdfast.bak"
			if err := linux.WriteFileAtomic(backup, config, 0o600); err != nil {
				return nil, fmt.Errorf("install containerd: back up config: %w", err)
			}
			changes = append(changes, registrar.Change{Action: registrar.BackedUp, Path: o.ConfigPath, Detail: "to " + backup})
		}
		if err := linux.WriteFileAtomic(o.ConfigPath, edited, 0o644); err != nil {
			return nil, fmt.Errorf("install containerd: write config: %w", err)
		}
		for _, e := range edits {
			changes = append(changes, registrar.Change{Action: registrar.Edited, Path: o.ConfigPath, Detail: e})
		}
	}

	pluginDir, confDir := o.dirs(nri)
	pluginPath := filepath.Join(pluginDir, o.PluginFile())
	change, err := registrar.EnsureFile(pluginPath, plugin, 0o755)
	if err != nil {
		return nil, fmt.Errorf("install containerd: install plugin: %w", err)
	}
	changes = append(changes, change)
	confPath := filepath.Join(confDir, o.PluginFile()+".conf")
	if change, err = registrar.EnsureFile(confPath, pluginConfig(o), 0o644); err != nil {
		return nil, fmt.Errorf("install containerd: write plugin config: %w", err)
	}
	return append(changes, change), nil
}

// Uninstall removes the plugin and reverts holdfast's config edits.
func Uninstall(ctx context.Context, o Options) ([]registrar.Change, error) {
	config, existed, major, err := o.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("uninstall containerd: %w", err)
	}
	// The plugin lives where the config (still edited) points.
	nri, err := ReadNRI(config, major)
	if err != nil {
		return nil, fmt.Errorf("uninstall containerd: %s: %w", o.ConfigPath, err)
	}
	var changes []registrar.Change
	pluginDir, confDir := o.dirs(nri)
	for _, path := range []string{
		filepath.Join(pluginDir, o.PluginFile()),
		filepath.Join(confDir, o.PluginFile()+".conf"),
	} {
		change, err := registrar.RemoveFile(path)
		if err != nil {
			return nil, fmt.Errorf("uninstall containerd: %w", err)
		}
		changes = append(changes, change)
	}
	if existed {
		reverted, edits, err := RevertNRI(config)
		if err != nil {
			return nil, fmt.Errorf("uninstall containerd: %s: %w", o.ConfigPath, err)
		}
		if len(edits) > 0 {
			if len(bytes.TrimSpace(reverted)) == 0 {
				// holdfast created the file; nothing of the user's is in it.
				if err := os.Remove(o.ConfigPath); err != nil {
					return nil, fmt.Errorf("uninstall containerd: %w", err)
				}
				changes = append(changes, registrar.Change{Action: registrar.Removed, Path: o.ConfigPath, Detail: "holdfast had created it"})
			} else if err := linux.WriteFileAtomic(o.ConfigPath, reverted, 0o644); err != nil {
				return nil, fmt.Errorf("uninstall containerd: write config: %w", err)
			} else {
				for _, e := range edits {
					changes = append(changes, registrar.Change{Action: registrar.Edited, Path: o.ConfigPath, Detail: e})
				}
			}
		}
	}
	return changes, nil
}

func (o Options) dirs(nri NRISettings) (string, string) {
	pluginDir, confDir := nri.PluginPath, nri.PluginConfigPath
	if o.PluginDir != "" {
		pluginDir = o.PluginDir
	}
	if o.PluginConfigDir != "" {
		confDir = o.PluginConfigDir
	}
	return pluginDir, confDir
}

// pluginConfig is what containerd hands the plugin in Configure: JSON,
// which the plugin reads as YAML.
func pluginConfig(o Options) []byte {
	data, _ := json.MarshalIndent(o.Plugin, "", "  ") // plain strings cannot fail
	return append(data, '\n')
}

// load fills o's defaults and reads containerd's config (existed is false
// for none) and the config version it is written for.
func (o *Options) load(ctx context.Context) (config []byte, existed bool, major int, err error) {
	if err := o.defaults(); err != nil {
		return nil, false, 0, err
	}
	if config, existed, err = readConfig(o.ConfigPath); err != nil {
		return nil, false, 0, err
	}
	if major, err = o.major(ctx, config); err != nil {
		return nil, false, 0, err
	}
	return config, existed, major, nil
}

// major finds containerd's major version.
func (o Options) major(ctx context.Context, config []byte) (int, error) {
	if o.Major != 0 {
		if o.Major != 1 && o.Major != 2 {
			return 0, fmt.Errorf("containerd major version %d: want 1 or 2", o.Major)
		}
		return o.Major, nil
	}
	bin := o.Containerd
	if bin == "" {
		bin = "containerd"
	}
	if path, err := exec.LookPath(bin); err == nil {
		return ContainerdMajor(ctx, path)
	}
	// No binary to ask: version 3 configs exist only for 2.x; an older
	// config gets NRI enabled explicitly, which 2.x accepts too.
	v, err := configVersion(config)
	if err != nil {
		return 0, err
	}
	if v >= 3 {
		return 2, nil
	}
	return 1, nil
}

var versionRE = regexp.MustCompile(`\bv?(\d+)\.(\d+)\.\d+`)

// ContainerdMajor runs `containerd --version` and returns its major
// version; versions before 1.7 have no NRI and are refused.
func ContainerdMajor(ctx context.Context, bin string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("ask %s for its version: %w", bin, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("ask %s for its version: no version in %q", bin, bytes.TrimSpace(out))
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major < 1 || (major == 1 && minor < 7) {
		return 0, fmt.Errorf("containerd %d.%d has no NRI support; holdfast needs 1.7 or later", major, minor)
	}
	return major, nil
}

func readConfig(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read containerd config: %w", err)
	}
	return b, true, nil
}
