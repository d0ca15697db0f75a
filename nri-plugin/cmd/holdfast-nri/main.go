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
	"strings"
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
	failMode := fs.String("fail-mode", string(registrar.FailOpen), "when the engine cannot register a container: open (start it unenforced) or closed (refuse it)")
	failOpenNS := fs.String("fail-open-namespaces", "", "comma-separated namespaces that fail open even in closed mode")
	engineNS := fs.String("engine-namespace", registrar.DefaultEngineNamespace, "holdfast's own namespace, always fail-open")
	idx := fs.String("idx", "10", "two-digit NRI plugin index")
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
	mode, err := registrar.ParseFailMode(*failMode)
	if err != nil {
		return fmt.Errorf("--fail-mode: %w", err)
	}
	if len(*idx) != 2 || (*idx)[0] < '0' || (*idx)[0] > '9' || (*idx)[1] < '0' || (*idx)[1] > '9' {
		return fmt.Errorf("--idx %q: want two digits", *idx)
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
		case "fail-mode":
			locked["failMode"] = true
		case "fail-open-namespaces":
			locked["failOpenNamespaces"] = true
		case "engine-namespace":
			locked["engineNamespace"] = true
		}
	})
	var failOpen []string
	for _, ns := range strings.Split(*failOpenNS, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			failOpen = append(failOpen, ns)
		}
	}
	p := &nriplugin.Plugin{
		Engine:     &api.Client{Socket: *engineSocket},
		FailPolicy: registrar.FailPolicy{Mode: mode, OpenNamespaces: failOpen, EngineNamespace: *engineNS},
		Cgroups:    mount,
		Log:        log,
		Locked:     locked,
		Offline:    fallback.Command{Binary: *holdfastBin, StateDir: *stateDir, BPFDir: *bpfDir},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return nriplugin.Run(ctx, p, nriplugin.RunOptions{Socket: *socket, Idx: *idx})
}
