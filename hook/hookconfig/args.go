package hookconfig

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api/registrar"
)

// Stages the hook can be installed at (ocihook.Stage names them too).
var Stages = []string{"createContainer", "createRuntime", "poststop"}

// NoConfigFile as --config reads no config file: defaults and flags only.
const NoConfigFile = "none"

// FromArgs parses the hook's command line over its config file (the
// --config file, else ConfigFileName next to the running binary) and
// returns the stage, the validated config with defaults applied and the
// config file read (NoConfigFile if none was). With -h it prints the usage
// to stderr and returns flag.ErrHelp.
func FromArgs(args []string, stderr io.Writer) (stage string, _ Config, file string, _ error) {
	if stage, file, ok := installedArgs(args); ok {
		cfg, err := fromFile(file)
		if err != nil {
			return "", Config{}, "", err
		}
		return stage, cfg, file, nil
	}
	return fromFlags(args, stderr)
}

// installedArgs recognises the command line the installer writes,
// --config FILE --stage STAGE, which sets nothing over the file. It is
// read without a flag set, whose set-up alone cost every container start
// 0.04 ms (and finding the binary's own path for the default config file
// 0.03 ms more).
func installedArgs(args []string) (stage, file string, ok bool) {
	if len(args) != 4 || args[0] != "--config" || args[2] != "--stage" {
		return "", "", false
	}
	if args[1] == "" || args[1] == NoConfigFile || !slices.Contains(Stages, args[3]) {
		return "", "", false
	}
	return args[3], args[1], true
}

// fromFile is the config of a command line that names file and sets
// nothing else, as fromFlags reads it.
func fromFile(file string) (Config, error) {
	cfg, found, err := LoadConfigFile(file)
	if err != nil {
		return Config{}, err
	}
	if !found {
		return Config{}, fmt.Errorf("config file %s does not exist", file)
	}
	return completed(cfg)
}

// completed is cfg with defaults applied, checked.
func completed(cfg Config) (Config, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("hook config: %w", err)
	}
	return cfg, nil
}

// fromFlags is FromArgs for any command line.
func fromFlags(args []string, stderr io.Writer) (stage string, _ Config, file string, _ error) {
	fs := flag.NewFlagSet("holdfast-oci-hook", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported as one line by the caller
	stageFlag := fs.String("stage", "", "OCI hook stage this hook is installed at: createContainer, createRuntime or poststop (required)")
	configFile := fs.String("config", "", "config file, or "+NoConfigFile+" (default: "+ConfigFileName+" next to this binary, if there is one)")
	socket := fs.String("socket", "", "engine socket (default "+DefaultSocket+")")
	timeout := fs.Duration("timeout", 0, "deadline for the whole run (default "+DefaultTimeout.String()+")")
	failFlags := registrar.AddFlags(fs)
	engineTimeout := fs.Duration("engine-timeout", 0, "part of --timeout the engine gets before the hook registers the container itself (default: half)")
	holdfastBin := fs.String("holdfast-binary", "", "holdfast binary for the slow path: a run the engine did not take, and registering while the engine is down (default: next to this binary, else in PATH)")
	stateDir := fs.String("state-dir", "", "the engine's state dir (default "+registrar.DefaultStateDir+")")
	bpfDir := fs.String("bpf-dir", "", "the engine's bpffs dir (default "+registrar.DefaultBPFDir+")")
	logFile := fs.String("log", "", "decision log file, - for stderr, none to disable (default "+DefaultLog+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: holdfast-oci-hook --stage STAGE [flags] < OCI state JSON")
			fs.PrintDefaults()
		}
		return "", Config{}, "", fmt.Errorf("parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return "", Config{}, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !slices.Contains(Stages, *stageFlag) {
		return "", Config{}, "", fmt.Errorf("--stage: unknown stage %q (want createContainer, createRuntime or poststop)", *stageFlag)
	}

	var cfg Config
	path := *configFile
	if path != NoConfigFile {
		if path == "" {
			exe, err := os.Executable()
			if err != nil {
				return "", Config{}, "", fmt.Errorf("find hook binary for its config file: %w", err)
			}
			path = filepath.Join(filepath.Dir(exe), ConfigFileName)
		}
		var found bool
		var err error
		if cfg, found, err = LoadConfigFile(path); err != nil {
			return "", Config{}, "", err
		}
		if !found && *configFile != "" {
			return "", Config{}, "", fmt.Errorf("config file %s does not exist", path)
		}
		if !found {
			path = NoConfigFile
		}
	}

	// Only the flags given override the config file.
	failPolicy, flagErr := failFlags.Settings()
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "socket":
			cfg.Socket = *socket
		case "timeout":
			cfg.Timeout = Duration(*timeout)
		case registrar.FlagFailMode:
			cfg.FailMode = failPolicy.FailMode
		case registrar.FlagFailOpenNamespaces:
			cfg.FailOpenNamespaces = failPolicy.FailOpenNamespaces
		case registrar.FlagEngineNamespace:
			cfg.EngineNamespace = failPolicy.EngineNamespace
		case "log":
			cfg.Log = *logFile
		case "engine-timeout":
			cfg.EngineTimeout = Duration(*engineTimeout)
		case "holdfast-binary":
			cfg.HoldfastBinary = *holdfastBin
		case "state-dir":
			cfg.StateDir = *stateDir
		case "bpf-dir":
			cfg.BPFDir = *bpfDir
		}
	})
	if flagErr != nil {
		return "", Config{}, "", flagErr
	}
	cfg, err := completed(cfg)
	if err != nil {
		return "", Config{}, "", err
	}
	return *stageFlag, cfg, path, nil
}

// Deadline is when a run that began at start must be done.
func (c Config) Deadline(start time.Time) time.Time { return start.Add(time.Duration(c.Timeout)) }
