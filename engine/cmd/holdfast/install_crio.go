package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
	"github.com/holdfast-dev/holdfast/hook/hooksd"
)

// installCRIO installs holdfast-oci-hook for CRI-O and podman (hooks.d).
func installCRIO(args []string) error {
	fs := newFlags("install crio")
	hooksDir := fs.String("hooks-dir", hooksd.DefaultHooksDir, "hooks.d directory CRI-O or podman reads")
	installDir := fs.String("install-dir", hooksd.DefaultInstallDir, "directory for the hook binary and its config file")
	binary := fs.String("hook-binary", "", "holdfast-oci-hook to install (default: next to this holdfast binary)")
	stage := fs.String("stage", string(hooksd.DefaultStage), "stage to register at: createRuntime (runs as the runtime does, also for user-namespaced containers) or createContainer")
	socket := fs.String("socket", hookconfig.DefaultSocket, "engine socket the hook connects to")
	failFlags := registrar.AddFlags(fs)
	timeout := fs.Duration("timeout", hookconfig.DefaultTimeout, "deadline for one hook run")
	logFile := fs.String("log", hookconfig.DefaultLog, "hook decision log file")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := ocihook.ParseStage(*stage)
	if err != nil {
		return usageError{fmt.Sprintf("install crio: --stage: %v", err)}
	}
	settings, err := failFlags.Settings()
	if err != nil {
		return usageError{fmt.Sprintf("install crio: %v", err)}
	}
	// This holdfast goes next to the hook, for its slow path.
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install crio: find this holdfast binary: %w", err)
	}
	if *binary == "" {
		*binary = filepath.Join(filepath.Dir(exe), hooksd.BinaryName)
	}
	cfg := hookconfig.Config{
		Socket:   *socket,
		Timeout:  hookconfig.Duration(*timeout),
		Settings: settings,
		Log:      *logFile,
	}
	changes, err := hooksd.Install(hooksd.Options{
		HooksDir: *hooksDir, InstallDir: *installDir, Binary: *binary, Holdfast: exe, Stage: st, Config: cfg,
	})
	printChanges("crio", changes, err, "")
	return err
}

// uninstallCRIO removes what installCRIO wrote.
func uninstallCRIO(args []string) error {
	fs := newFlags("uninstall crio")
	hooksDir := fs.String("hooks-dir", hooksd.DefaultHooksDir, "hooks.d directory")
	installDir := fs.String("install-dir", hooksd.DefaultInstallDir, "directory of the hook binary and its config file")
	if err := parse(fs, args); err != nil {
		return err
	}
	changes, err := hooksd.Uninstall(hooksd.Options{HooksDir: *hooksDir, InstallDir: *installDir})
	printChanges("crio", changes, err, "")
	return err
}
