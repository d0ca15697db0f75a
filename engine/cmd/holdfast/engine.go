package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/cgroup"
	"github.com/holdfast-dev/holdfast/engine/cri"
	"github.com/holdfast-dev/holdfast/engine/daemon"
)

// Defaults of a production node.
const (
	defaultPolicyDir = "/etc/holdfast/policies.d"
	defaultStateDir  = "/var/lib/holdfast"
	defaultBPFDir    = "/sys/fs/bpf/holdfast"
	defaultSocket    = api.DefaultSocket
)

func version() string { return "holdfast " + daemon.Version }

func runEngine(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("engine")
	policyDir := fs.String("policies", defaultPolicyDir, "directory of WorkloadPolicy YAML files")
	stateDir := fs.String("state-dir", defaultStateDir, "directory for the registry and policy snapshot")
	bpfDir := fs.String("bpf-dir", defaultBPFDir, "bpffs directory for pinned programs, links and maps")
	socket := fs.String("socket", defaultSocket, "Unix socket for registrars and the CLI (mode 0600, root only)")
	eventsFile := fs.String("events", "", "file to append JSON-lines events to (default stderr)")
	cgroupRoot := fs.String("cgroup-root", "", "cgroup v2 mount (default: detected from /proc/self/mountinfo)")
	criEndpoint := fs.String("cri-endpoint", "", "CRI endpoint to adopt running containers from at start (unix:///...)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Sprintf("engine: --log-level: %v", err)}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var events io.Writer = stderr
	if *eventsFile != "" {
		f, err := os.OpenFile(*eventsFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open events file: %w", err)
		}
		defer f.Close()
		events = f
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	opts := daemon.Options{
		PolicyDir:  *policyDir,
		StateDir:   *stateDir,
		BPFDir:     *bpfDir,
		CgroupRoot: *cgroupRoot,
		Events:     events,
		Log:        log,
	}
	if *criEndpoint != "" {
		opts.Discover = func(ctx context.Context, m cgroup.Mount) ([]api.Container, error) {
			return (&cri.Lister{Endpoint: *criEndpoint, Cgroups: m, Log: log}).List(ctx)
		}
		opts.DiscoverSource = cri.Source
	}
	eng, err := daemon.New(ctx, opts)
	if err != nil {
		return err
	}
	defer eng.Close()

	l, err := api.Listen(*socket)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	defer os.Remove(*socket)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := eng.Reload(ctx); err != nil {
				log.Error("policy reload refused; enforcement unchanged", "err", err)
			} else {
				log.Info("policies reloaded")
			}
		}
	}()

	errc := make(chan error, 2)
	go func() { errc <- eng.StreamEvents(ctx) }()
	srv := &api.Server{Handler: eng, Log: log}
	go func() { errc <- srv.Serve(ctx, l) }()
	log.Info("engine ready", "socket", *socket, "bpf-dir", *bpfDir, "adopted", eng.Enforcer().Adopted())

	var firstErr error
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil && firstErr == nil {
			firstErr = err
			stop()
		}
	}
	if firstErr == nil || errors.Is(firstErr, context.Canceled) {
		log.Info("engine stopped; pinned enforcement stays in place")
		return nil
	}
	return firstErr
}
