// Package hookconfig is holdfast-oci-hook's configuration: the file next to
// the binary, the flags laid over it, defaults and validation. Both halves
// of the hook read it the same way: the fast path (hook/fastpath, in the
// hook's own small process) and the full run (package hook, in holdfast
// oci-hook), so a setting one refuses the other refuses too.
//
// It imports of this module only leaf packages (bpf/linux, jsonscan,
// oneshot, registrar): not package net, nor the protocol's client.
package hookconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api/jsonscan"
	"github.com/holdfast-dev/holdfast/engine/api/oneshot"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// Defaults.
const (
	DefaultSocket  = oneshot.DefaultSocket
	DefaultTimeout = 2 * time.Second
	DefaultLog     = "/var/log/holdfast/oci-hook.log"
	// ConfigFileName is looked up in the directory of the hook binary.
	ConfigFileName = "holdfast-oci-hook.json"
)

// maxConfigFile bounds the hook's own config file.
const maxConfigFile = 1 << 20

// Config is the hook's configuration: the file next to the binary, with
// flags laid over it. Zero fields mean "use the default".
type Config struct {
	Socket  string   `json:"socket,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
	// The fail policy: failMode, failOpenNamespaces, engineNamespace.
	registrar.Settings
	// Log is the decision log file; "-" means stderr, "none" disables it.
	Log string `json:"log,omitempty"`
	// EngineTimeout is the part of Timeout the engine gets to answer before
	// the hook registers the container itself (default: half of Timeout).
	EngineTimeout Duration `json:"engineTimeout,omitempty"`
	// HoldfastBinary runs the slow path (default: holdfast next to the hook
	// binary, else in PATH); StateDir and BPFDir are the engine's.
	HoldfastBinary string `json:"holdfastBinary,omitempty"`
	StateDir       string `json:"stateDir,omitempty"`
	BPFDir         string `json:"bpfDir,omitempty"`
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(DefaultTimeout)
	}
	c.Settings = c.Settings.WithDefaults()
	if c.Log == "" {
		c.Log = DefaultLog
	}
	if c.EngineTimeout == 0 {
		c.EngineTimeout = c.Timeout / 2
	}
	if c.StateDir == "" {
		c.StateDir = registrar.DefaultStateDir
	}
	if c.BPFDir == "" {
		c.BPFDir = registrar.DefaultBPFDir
	}
	return c
}

// Validate checks a config after defaults are applied.
func (c Config) Validate() error {
	if !filepath.IsAbs(c.Socket) {
		return fmt.Errorf("socket %q is not an absolute path", c.Socket)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout %v is not positive", time.Duration(c.Timeout))
	}
	if c.EngineTimeout <= 0 || c.EngineTimeout > c.Timeout {
		return fmt.Errorf("engine timeout %v is not within the timeout %v", time.Duration(c.EngineTimeout), time.Duration(c.Timeout))
	}
	for name, p := range map[string]string{"holdfast binary": c.HoldfastBinary, "state dir": c.StateDir, "bpf dir": c.BPFDir} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q is not an absolute path", name, p)
		}
	}
	if err := c.Settings.Validate(); err != nil {
		return err
	}
	if c.Log != "-" && c.Log != "none" && !filepath.IsAbs(c.Log) {
		return fmt.Errorf("log file %q is not an absolute path", c.Log)
	}
	return nil
}

// LoadConfigFile reads a config file. A missing file is not an error: it
// returns the zero Config and found=false.
func LoadConfigFile(path string) (cfg Config, found bool, err error) {
	data, err := linux.ReadRegularFile(path, maxConfigFile, "hook config "+path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, true, fmt.Errorf("read hook config: %w", err)
	}
	cfg, err = ParseConfig(data)
	if err != nil {
		return Config{}, true, fmt.Errorf("hook config %s: %w", path, err)
	}
	return cfg, true, nil
}

// ParseConfig decodes a config file's contents strictly: unknown fields are
// errors, so a misspelt "failMode" cannot silently leave a node fail-open.
// It reads as encoding/json would into Config (FuzzParseConfig holds it to
// that) without building encoding/json's reflection caches, which cost the
// hook 0.1 to 0.5 ms of every run.
func ParseConfig(data []byte) (Config, error) {
	cfg, err := scanConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("malformed JSON: %w", err)
	}
	if err := cfg.Settings.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func scanConfig(data []byte) (Config, error) {
	var c Config
	s := jsonscan.New(data)
	if s.Null() {
		return c, s.End()
	}
	err := s.Object(func(key string) error {
		for _, f := range []struct {
			name string
			dst  *string
		}{
			{"socket", &c.Socket}, {"engineNamespace", &c.EngineNamespace}, {"log", &c.Log},
			{"holdfastBinary", &c.HoldfastBinary}, {"stateDir", &c.StateDir}, {"bpfDir", &c.BPFDir},
		} {
			if strings.EqualFold(key, f.name) {
				return s.String(f.dst)
			}
		}
		switch {
		case strings.EqualFold(key, "timeout"):
			return scanDuration(s, &c.Timeout)
		case strings.EqualFold(key, "engineTimeout"):
			return scanDuration(s, &c.EngineTimeout)
		case strings.EqualFold(key, "failMode"):
			mode := string(c.FailMode)
			err := s.String(&mode)
			c.FailMode = registrar.FailMode(mode)
			return err
		case strings.EqualFold(key, "failOpenNamespaces"):
			return s.Strings(&c.FailOpenNamespaces)
		}
		return fmt.Errorf("unknown field %q", key)
	})
	if err == nil {
		err = s.End()
	}
	return c, err
}

// scanDuration reads a Duration as its UnmarshalJSON does.
func scanDuration(s *jsonscan.Scanner, d *Duration) error {
	var text string
	if s.Null() {
		return errors.New("duration must be a string like \"2s\", not null")
	}
	if err := s.String(&text); err != nil {
		return fmt.Errorf("duration must be a string like \"2s\": %w", err)
	}
	return d.parse(text)
}

// Duration is a time.Duration written as "2s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string (which holds
// nothing JSON escapes but "µ", which JSON takes as it is).
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// UnmarshalJSON reads a Go duration string such as "1500ms", as the
// config file's reader does (scanDuration).
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := jsonscan.New(b)
	if err := scanDuration(s, d); err != nil {
		return err
	}
	return s.End()
}

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
