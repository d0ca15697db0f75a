package hooksd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
)

// Options for Install and Uninstall.
type Options struct {
	HooksDir   string // hooks.d directory (DefaultHooksDir when empty)
	InstallDir string // where the hook binary and its config go (DefaultInstallDir when empty)
	// Binary is the holdfast-oci-hook to install; Install only.
	Binary string
	// Holdfast, when set, is the holdfast binary installed next to the hook:
	// the hook hands it every run the engine does not take (holdfast
	// oci-hook: registering while the engine is down, the fail mode by
	// namespace); Install only.
	Holdfast string
	// Stage is createRuntime (default) or createContainer; Install only.
	Stage ocihook.Stage
	// Config is written next to the installed binary; Install only.
	Config hookconfig.Config
}

func (o Options) withDefaults() Options {
	if o.HooksDir == "" {
		o.HooksDir = DefaultHooksDir
	}
	if o.InstallDir == "" {
		o.InstallDir = DefaultInstallDir
	}
	if o.Stage == "" {
		o.Stage = DefaultStage
	}
	return o
}

// Paths of the installed files.
func (o Options) HookFile() string   { return filepath.Join(o.withDefaults().HooksDir, HookFileName) }
func (o Options) BinaryPath() string { return filepath.Join(o.withDefaults().InstallDir, BinaryName) }
func (o Options) HoldfastPath() string {
	return filepath.Join(o.withDefaults().InstallDir, fallback.BinaryName)
}
func (o Options) ConfigPath() string {
	return filepath.Join(o.withDefaults().InstallDir, hookconfig.ConfigFileName)
}

// Install writes the hook binary, its config and the hooks.d file, in that
// order: containers/common refuses a hooks.d file whose binary is missing.
func Install(o Options) ([]registrar.Change, error) {
	o = o.withDefaults()
	if !filepath.IsAbs(o.HooksDir) || !filepath.IsAbs(o.InstallDir) {
		return nil, fmt.Errorf("install OCI hook: hooks dir %q and install dir %q must be absolute", o.HooksDir, o.InstallDir)
	}
	if err := o.Config.WithDefaults().Validate(); err != nil {
		return nil, fmt.Errorf("install OCI hook: config: %w", err)
	}
	cfgData, err := marshalConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("install OCI hook: %w", err)
	}
	file, err := NewFile(o.BinaryPath(), o.ConfigPath(), o.Stage, time.Duration(o.Config.WithDefaults().Timeout))
	if err != nil {
		return nil, fmt.Errorf("install OCI hook: %w", err)
	}
	bin, err := readBinary(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("install OCI hook: %w", err)
	}
	type step struct {
		path string
		data func() ([]byte, error)
		mode os.FileMode
	}
	var steps []step
	if o.Holdfast != "" {
		steps = append(steps, step{o.HoldfastPath(), func() ([]byte, error) { return readBinary(o.Holdfast) }, 0o755})
	}

	var changes []registrar.Change
	for _, step := range append(steps, []step{
		{o.BinaryPath(), func() ([]byte, error) { return bin, nil }, 0o755},
		{o.ConfigPath(), func() ([]byte, error) { return cfgData, nil }, 0o644},
		{o.HookFile(), func() ([]byte, error) {
			if err := file.Validate(); err != nil {
				return nil, fmt.Errorf("hooks.d file would not load: %w", err)
			}
			return file.Marshal()
		}, 0o644},
	}...) {
		data, err := step.data()
		if err != nil {
			return changes, fmt.Errorf("install OCI hook: %w", err)
		}
		change, err := registrar.EnsureFile(step.path, data, step.mode)
		if err != nil {
			return changes, fmt.Errorf("install OCI hook: %w", err)
		}
		changes = append(changes, change)
	}
	return changes, nil
}

// Uninstall removes the hooks.d file first (so no runtime starts a hook
// that is about to disappear), then the config and the binary.
func Uninstall(o Options) ([]registrar.Change, error) {
	o = o.withDefaults()
	var changes []registrar.Change
	for _, p := range []string{o.HookFile(), o.ConfigPath(), o.BinaryPath(), o.HoldfastPath()} {
		change, err := registrar.RemoveFile(p)
		if err != nil {
			return changes, fmt.Errorf("uninstall OCI hook: %w", err)
		}
		changes = append(changes, change)
	}
	return changes, nil
}

// marshalConfig renders the hook's config file, indented, with a trailing
// newline.
func marshalConfig(c hookconfig.Config) ([]byte, error) {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode hook config: %w", err)
	}
	return append(data, '\n'), nil
}

// maxBinary bounds the hook binary read into memory.
const maxBinary = 256 << 20

func readBinary(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("no hook binary given")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read hook binary: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read hook binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("hook binary %s is not an executable file (mode %v)", path, fi.Mode())
	}
	return linux.ReadLimited(f, maxBinary, "hook binary "+path)
}
