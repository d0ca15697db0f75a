package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	nriplugin "github.com/holdfast-dev/holdfast/nri-plugin"
	"github.com/holdfast-dev/holdfast/nri-plugin/install"
)

// installContainerd enables NRI in containerd's config where needed and
// installs holdfast-nri as a pre-registered plugin.
func installContainerd(args []string) error {
	fs := newFlags("install containerd")
	o := containerdFlags(fs)
	binary := fs.String("plugin-binary", "", "holdfast-nri to install (default: next to this holdfast binary)")
	socket := fs.String("socket", nriplugin.DefaultEngineSocket, "engine socket the plugin connects to")
	failFlags := registrar.AddFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	settings, err := failFlags.Settings()
	if err != nil {
		return usageError{fmt.Sprintf("install containerd: %v", err)}
	}
	if *binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("install containerd: find holdfast-nri next to holdfast: %w", err)
		}
		*binary = filepath.Join(filepath.Dir(exe), "holdfast-nri")
	}
	o.PluginBinary = *binary
	o.Plugin = nriplugin.Config{
		EngineSocket: *socket,
		Settings:     settings,
	}
	changes, err := install.Install(context.Background(), *o)
	printChanges("containerd", changes, err, "restart containerd to load them (systemctl restart containerd)")
	return err
}

// uninstallContainerd removes the plugin and reverts holdfast's config edits.
func uninstallContainerd(args []string) error {
	fs := newFlags("uninstall containerd")
	o := containerdFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	changes, err := install.Uninstall(context.Background(), *o)
	printChanges("containerd", changes, err, "restart containerd to unload the plugin (systemctl restart containerd)")
	return err
}

func containerdFlags(fs *flag.FlagSet) *install.Options {
	o := &install.Options{}
	fs.StringVar(&o.ConfigPath, "config", install.DefaultConfigPath, "containerd config file")
	fs.StringVar(&o.Containerd, "containerd", "containerd", "containerd binary, asked for its version")
	fs.IntVar(&o.Major, "containerd-major", 0, "containerd major version, 1 or 2 (default: ask the binary)")
	fs.StringVar(&o.Idx, "idx", nriplugin.DefaultIdx, "two-digit NRI plugin index")
	fs.StringVar(&o.PluginDir, "plugin-dir", "", "NRI plugin_path (default: from the config)")
	fs.StringVar(&o.PluginConfigDir, "plugin-config-dir", "", "NRI plugin_config_path (default: from the config)")
	return o
}

// printChanges prints an installer's changes, one a line; after a success,
// next when a file changed, else that nothing did.
func printChanges(what string, changes []registrar.Change, err error, next string) {
	for _, c := range changes {
		fmt.Println(c)
	}
	if err != nil {
		return
	}
	if !registrar.Changed(changes) {
		fmt.Println(what + ": nothing to change")
	} else if next != "" {
		fmt.Println(next)
	}
}
