// Command holdfast-nri is holdfast's containerd NRI plugin. Run it as an
// external plugin (it connects to --socket) or install it pre-registered as
// /opt/nri/plugins/NN-holdfast, where containerd starts it and hands it the
// configuration from /etc/nri/conf.d/NN-holdfast.conf.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	nri "github.com/containerd/nri/pkg/api"

	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/engine/api/registrar"
	nriplugin "github.com/holdfast-dev/holdfast/nri-plugin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "holdfast-nri:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("holdfast-nri", flag.ContinueOnError)
	socket := fs.String("socket", nri.DefaultSocketPath, "containerd's NRI socket (external plugin mode)")
	engineSocket := fs.String("engine-socket", nriplugin.DefaultEngineSocket, "holdfast engine control socket")
	failFlags := registrar.AddFlags(fs)
	idx := fs.String("idx", nriplugin.DefaultIdx, "two-digit NRI plugin index")
	verbose := fs.Bool("v", false, "debug logging")
	holdfastBin := fs.String("holdfast-binary", "", "holdfast binary that registers containers while the engine is down (default: next to this binary, else in PATH)")
	stateDir := fs.String("state-dir", fallback.DefaultStateDir, "the engine's state dir, for registering while it is down")
	bpfDir := fs.String("bpf-dir", fallback.DefaultBPFDir, "the engine's bpffs dir, for registering while it is down")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	settings, err := failFlags.Settings()
	if err != nil {
		return err
	}
	if err := nriplugin.CheckIdx(*idx); err != nil {
		return fmt.Errorf("--idx: %w", err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	mount, err := cgroup.Detect()
	if err != nil {
		return err
	}
	// Settings on the command line win over containerd's plugin config.
	locked := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "engine-socket":
			locked["engineSocket"] = true
		case registrar.FlagFailMode:
			locked["failMode"] = true
		case registrar.FlagFailOpenNamespaces:
			locked["failOpenNamespaces"] = true
		case registrar.FlagEngineNamespace:
			locked["engineNamespace"] = true
		}
	})
	p := &nriplugin.Plugin{
		Engine:   &api.Client{Socket: *engineSocket},
		Settings: settings,
		Cgroups:  mount,
		Log:      log,
		Locked:   locked,
		Offline:  fallback.Command{Binary: *holdfastBin, StateDir: *stateDir, BPFDir: *bpfDir},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return nriplugin.Run(ctx, p, nriplugin.RunOptions{Socket: *socket, Idx: *idx})
}
