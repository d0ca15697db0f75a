package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/cri"
	"github.com/holdfast-dev/holdfast/engine/daemon"
	"github.com/holdfast-dev/holdfast/engine/eventlog"
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
	criEndpoint := fs.String("cri-endpoint", "", "CRI endpoint to reconcile running containers with (unix:///...; default: the first of containerd's and CRI-O's default sockets that exists; \"none\": off)")
	criInterval := fs.Duration("cri-reconcile-interval", 30*time.Second, "how often to reconcile with the CRI runtime after start (0: only at start)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	eventsMax := fs.Int64("events-max-bytes", 100<<20, "rotate the --events file before it passes this size (0: never)")
	eventsBackups := fs.Int("events-max-backups", 5, "rotated events files to keep (FILE.1 newest)")
	summaryInterval := fs.Duration("event-summary-interval", bpf.EventWindow, "how often denial summaries with exact kernel counts are written")
	watchPolicies := fs.Bool("watch-policies", true, "apply changes of the policy dir (files, ConfigMap volume updates) as they happen")
	policyDebounce := fs.Duration("policy-debounce", daemon.DefaultPolicyDebounce, "wait this long after a policy dir change before reading it")
	capacity := capacityFlags(fs)
	observe := observeFlags(fs)
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
		f, err := eventlog.Open(*eventsFile, *eventsMax, *eventsBackups)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
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

		Capacity:        capacity,
		SummaryInterval: *summaryInterval,
		WatchPolicies:   *watchPolicies,
		PolicyDebounce:  *policyDebounce,
		Observe:         observe.options,
	}
	if *criEndpoint != "none" {
		criOptions(&opts, *criEndpoint, *criInterval, log)
	}
	// The socket first: if a live engine answers on it, exit before
	// touching its state, maps or socket.
	l, err := api.Listen(*socket)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	// Remove the socket on the way out only while it is still this one.
	if mine, err := os.Stat(*socket); err == nil {
		defer func() {
			if now, err := os.Stat(*socket); err == nil && os.SameFile(mine, now) {
				os.Remove(*socket)
			}
		}()
	}
	defer l.Close()
	// Start-up only grows the heap (the registry, the kernel's BTF): GC
	// cycles then cost time and free little, so it runs them rarely
	// until the engine is ready, and hands the garbage back after.
	gcPercent := debug.SetGCPercent(800)
	eng, err := daemon.New(ctx, opts)
	debug.SetGCPercent(servingGCPercent(gcPercent))
	if err != nil {
		return err
	}
	defer eng.Close()
	metricsSrv, err := observe.listenMetrics(eng, log)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}

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

	errc := make(chan error, 6)
	go func() { errc <- metricsSrv.Serve(ctx) }()
	go func() { errc <- eng.StreamEvents(ctx) }()
	go func() { errc <- eng.Maintain(ctx) }()
	go func() { errc <- eng.ReconcileDiscovered(ctx) }()
	go func() {
		if *watchPolicies {
			errc <- eng.WatchPolicies(ctx)
			return
		}
		errc <- nil
	}()
	srv := &api.Server{Handler: eng, Log: log}
	go func() { errc <- srv.Serve(ctx, l) }()
	go func() {
		eng.LogControls()
		// Garbage of start-up, the adopted set's probes included.
		debug.FreeOSMemory()
	}()
	log.Info("engine ready", "socket", *socket, "bpf-dir", *bpfDir, "adopted", eng.Enforcer().Adopted())

	var firstErr error
	for i := 0; i < cap(errc); i++ {
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

// capacityFlags defines the --max-* map capacity flags on fs; the returned
// Capacity fills in as fs parses.
func capacityFlags(fs *flag.FlagSet) bpf.Capacity {
	capacity := bpf.Capacity{}
	for _, c := range []struct {
		flag, m string
		def     uint32
		usage   string
	}{
		{"max-cgroups", bpf.MapCgroupRules, 65536, "registered cgroups (cgroup_rules entries)"},
		{"max-rulesets", bpf.MapRulesets, 65536, "distinct rulesets"},
		{"max-exec-rules", bpf.MapExecRules, 65536, "exec rules over all rulesets"},
		{"max-net4-rulesets", bpf.MapNet4Rules, 65536, "rulesets with IPv4 connect rules (each has its own trie)"},
		{"max-net6-rulesets", bpf.MapNet6Rules, 65536, "rulesets with IPv6 connect rules"},
		{"max-net-prefixes", bpf.MapNetPrefixes, 16384, "CIDR prefixes in one ruleset's trie, per family"},
		{"max-port-chunks", bpf.MapPortChunks, 65536, "overflow chunks of 16 port rules, over all rulesets"},
		{"max-socket-rules", bpf.MapSocketRules, 65536, "socket-family rules over all rulesets"},
		{"max-bind-rulesets", bpf.MapBindRules, 65536, "rulesets with bind rules"},
		{"max-denial-counters", bpf.MapDenials, 16384, "per (container, rule, action) denial counters"},
		{"events-ring-bytes", bpf.MapEvents, 256 << 10, "kernel event ring buffer size (power of two)"},
		{"max-audit-rules", bpf.MapAuditRules, 65536, "audit-mode rules over all rulesets (spec.mode: audit)"},
		{"max-process-envs", bpf.MapProcessEnvs, 4096, "captured process environments with --capture-env (an LRU map of about 1 KiB entries, allocated whether capture is on or off)"},
		{"max-processes", bpf.MapProcesses, 32768, "tracked container processes (an LRU table: the least recently used go when full, and their descendants' ancestry is incomplete)"},
	} {
		fs.Func(c.flag, fmt.Sprintf("%s (default %d; pinned maps keep their size until uninstall)", c.usage, c.def), func(v string) error {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return fmt.Errorf("want a positive number, got %q", v)
			}
			capacity[c.m] = uint32(n)
			return nil
		})
	}
	return capacity
}

// criOptions makes the engine reconcile with the node's CRI runtime and ask
// it for pod labels. An empty endpoint is detected on each use among the
// default sockets, so a runtime that starts after the engine is found.
func criOptions(opts *daemon.Options, endpoint string, interval time.Duration, log *slog.Logger) {
	lister := func(m cgroup.Mount, known func(string) bool) (*cri.Lister, error) {
		ep := endpoint
		if ep == "" {
			var err error
			if ep, err = cri.DetectEndpoint(cri.DefaultEndpoints); err != nil {
				return nil, err
			}
		}
		return &cri.Lister{Endpoint: ep, Cgroups: m, Known: known, Log: log}, nil
	}
	opts.Discover = func(ctx context.Context, m cgroup.Mount, known func(string) bool) ([]api.Container, error) {
		l, err := lister(m, known)
		if err != nil {
			return nil, err
		}
		return l.List(ctx)
	}
	opts.PodSandbox = func(ctx context.Context, id string) (*api.Pod, error) {
		l, err := lister(cgroup.Mount{}, nil)
		if err != nil {
			return nil, err
		}
		return l.Pod(ctx, id)
	}
	opts.DiscoverSource = cri.Source
	opts.DiscoverInterval = interval
	opts.DiscoverEndpoint = endpoint
	if endpoint == "" {
		opts.DiscoverEndpoint = "auto: first of " + strings.Join(cri.DefaultEndpoints, ", ")
	}
}

// servingGC is the GC percent while serving, unless GOGC says otherwise:
// a registration leaves garbage, and at the default 100 a burst of them
// from many registrars meets a collection every few hundred, whose assists
// land on the registrations in flight (p99 of 7.6–11.3 ms against 5.4–5.7
// ms at 200, at 2,000 registrations/s: go test -run '^$' -bench
// ConcurrentRegistrations ./test/engine/). No memory limit comes with it:
// one below the live heap of a large node makes the runtime collect
// without pause (measured: p99 of 340 ms at 40,000 registrations under a
// 48 MiB limit).
const servingGC = 200

func servingGCPercent(fromEnv int) int {
	if os.Getenv("GOGC") != "" {
		return fromEnv
	}
	return servingGC
}
