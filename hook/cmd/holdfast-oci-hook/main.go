// Command holdfast-oci-hook registers a container with the holdfast engine
// from an OCI runtime hook (createContainer or createRuntime) and
// unregisters it at poststop. The runtime passes the OCI state on stdin;
// the stage comes from --stage. Settings are read from
// holdfast-oci-hook.json next to the binary; flags override it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook"
)

// exitUsage is the status for a broken command line or config file.
const exitUsage = 2

func main() {
	os.Exit(run(time.Now(), os.Args[1:], os.Stdin, os.Stderr))
}

func run(start time.Time, args []string, stdin io.Reader, stderr io.Writer) int {
	stage, cfg, err := configure(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "holdfast-oci-hook: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return exitUsage
	}
	// One deadline for the whole run, counted from process start.
	ctx := hook.WithDeadline(start.Add(time.Duration(cfg.Timeout)))
	h := &hook.Hook{
		Stage:  stage,
		Config: cfg,
		Engine: &api.Client{Socket: cfg.Socket},
		// A create run goes whole to the engine on a connection of its own.
		Forward: api.OneShot{Socket: cfg.Socket},
		// The slow path: the holdfast binary registers the container
		// itself when the engine cannot be reached.
		Offline: fallback.Command{Binary: cfg.HoldfastBinary, StateDir: cfg.StateDir, BPFDir: cfg.BPFDir},
	}
	d := h.Run(ctx, stdin)
	if err := hook.AppendLog(cfg.Log, stderr, d); err != nil {
		fmt.Fprintf(stderr, "holdfast-oci-hook: %v\n", err)
	}
	if line := d.StderrLine(); line != "" {
		io.WriteString(stderr, line)
	}
	return d.ExitCode()
}

// configure parses flags over the config file and validates the result.
func configure(args []string, stderr io.Writer) (ocihook.Stage, hook.Config, error) {
	fs := flag.NewFlagSet("holdfast-oci-hook", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported as one line by the caller
	stageFlag := fs.String("stage", "", "OCI hook stage this hook is installed at: createContainer, createRuntime or poststop (required)")
	configFile := fs.String("config", "", "config file (default: "+hook.ConfigFileName+" next to this binary)")
	socket := fs.String("socket", "", "engine socket (default "+hook.DefaultSocket+")")
	timeout := fs.Duration("timeout", 0, "deadline for the whole run (default "+hook.DefaultTimeout.String()+")")
	failFlags := registrar.AddFlags(fs)
	engineTimeout := fs.Duration("engine-timeout", 0, "part of --timeout the engine gets before the hook registers the container itself (default: half)")
	holdfastBin := fs.String("holdfast-binary", "", "holdfast binary for registering while the engine is down (default: next to this binary, else in PATH)")
	stateDir := fs.String("state-dir", "", "the engine's state dir (default "+fallback.DefaultStateDir+")")
	bpfDir := fs.String("bpf-dir", "", "the engine's bpffs dir (default "+fallback.DefaultBPFDir+")")
	logFile := fs.String("log", "", "decision log file, - for stderr, none to disable (default "+hook.DefaultLog+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: holdfast-oci-hook --stage STAGE [flags] < OCI state JSON")
			fs.PrintDefaults()
		}
		return "", hook.Config{}, fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return "", hook.Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	stage, err := ocihook.ParseStage(*stageFlag)
	if err != nil {
		return "", hook.Config{}, fmt.Errorf("--stage: %w", err)
	}

	path := *configFile
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", hook.Config{}, fmt.Errorf("find hook binary for its config file: %w", err)
		}
		path = filepath.Join(filepath.Dir(exe), hook.ConfigFileName)
	}
	cfg, found, err := hook.LoadConfigFile(path)
	if err != nil {
		return "", hook.Config{}, err
	}
	if !found && *configFile != "" {
		return "", hook.Config{}, fmt.Errorf("config file %s does not exist", path)
	}

	// Only the flags given override the config file.
	failPolicy, flagErr := failFlags.Settings()
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "socket":
			cfg.Socket = *socket
		case "timeout":
			cfg.Timeout = hook.Duration(*timeout)
		case registrar.FlagFailMode:
			cfg.FailMode = failPolicy.FailMode
		case registrar.FlagFailOpenNamespaces:
			cfg.FailOpenNamespaces = failPolicy.FailOpenNamespaces
		case registrar.FlagEngineNamespace:
			cfg.EngineNamespace = failPolicy.EngineNamespace
		case "log":
			cfg.Log = *logFile
		case "engine-timeout":
			cfg.EngineTimeout = hook.Duration(*engineTimeout)
		case "holdfast-binary":
			cfg.HoldfastBinary = *holdfastBin
		case "state-dir":
			cfg.StateDir = *stateDir
		case "bpf-dir":
			cfg.BPFDir = *bpfDir
		}
	})
	if flagErr != nil {
		return "", hook.Config{}, flagErr
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return "", hook.Config{}, fmt.Errorf("hook config: %w", err)
	}
	return stage, cfg, nil
}
