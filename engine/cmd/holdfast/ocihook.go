package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/daemon"
	"github.com/holdfast-dev/holdfast/hook"
	"github.com/holdfast-dev/holdfast/hook/fastpath"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
)

// runOCIHook is a whole OCI hook run (hidden): what holdfast-oci-hook's
// fast path hands over, with the hook's command line after "--" and its
// stdin (the state it read, or the runtime's pipe). It returns the hook's
// exit status; the hook writes its own stderr lines, for the runtime to
// show as they are.
//
//	holdfast oci-hook [--elapsed-ns N] -- HOOK-ARGS...
func runOCIHook(args []string, stdin io.Reader, stderr io.Writer) int {
	started := time.Now()
	if len(args) >= 2 && args[0] == fastpath.ElapsedFlag {
		ns, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || ns < 0 {
			fmt.Fprintf(stderr, "holdfast oci-hook: %s %q: want a duration in nanoseconds\n", fastpath.ElapsedFlag, args[1])
			return hook.ExitUsage
		}
		// On this process's monotonic clock: the run began ns before now.
		started, args = started.Add(-time.Duration(ns)), args[2:]
	}
	if len(args) == 0 || args[0] != "--" {
		fmt.Fprintln(stderr, "holdfast oci-hook: want -- before the hook's arguments")
		return hook.ExitUsage
	}
	return hook.Main(started, args[1:], stdin, stderr, func(cfg hookconfig.Config) hook.Engine {
		return offlineEngine{daemon.Options{StateDir: cfg.StateDir, BPFDir: cfg.BPFDir}}
	})
}

// offlineEngine registers without the engine in this process: the offline
// commands' work (daemon.RegisterOffline), without starting holdfast again.
// Its wait for the state-dir lock ends with the run's deadline; once it
// holds the lock it finishes the registration (milliseconds), past the
// deadline if need be, which the runtime's own timeout for the hook (5 s
// in the installed hooks.d entry, the hook's deadline 2 s) leaves room for:
// a map update is never cut in half by the hook giving up.
type offlineEngine struct{ opts daemon.Options }

var _ hook.Engine = offlineEngine{}

func (o offlineEngine) Register(ctx context.Context, c api.Container) (*api.Container, error) {
	return daemon.RegisterOffline(ctx, o.opts, c)
}

func (o offlineEngine) Unregister(ctx context.Context, id string) error {
	return daemon.UnregisterOffline(ctx, o.opts, id)
}
