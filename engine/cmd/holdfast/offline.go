package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/engine/daemon"
)

// exitError carries a command's own exit status (the offline commands'
// protocol) out to main.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// offlineFlags are the flags both offline commands take.
func offlineFlags(name string) (f *flag.FlagSet, opts *daemon.Options, timeout *time.Duration, id *string) {
	f = newFlags(name)
	opts = &daemon.Options{}
	f.StringVar(&opts.StateDir, "state-dir", defaultStateDir, "the engine's state dir")
	f.StringVar(&opts.BPFDir, "bpf-dir", defaultBPFDir, "the engine's bpffs directory")
	f.StringVar(&opts.CgroupRoot, "cgroup-root", "", "cgroup v2 mount (default: detected)")
	timeout = f.Duration("timeout", 2*time.Second, "deadline, the wait for the state-dir lock included")
	id = f.String("id", "", "container id (unregister-offline)")
	return f, opts, timeout, id
}

// runRegisterOffline is the registrars' slow path (hidden): register the
// container read from stdin while no engine answers.
func runRegisterOffline(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs, opts, timeout, _ := offlineFlags(fallback.CommandRegister)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var c api.Container
	dec := json.NewDecoder(io.LimitReader(stdin, api.MaxMessageSize))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return usageError{fmt.Sprintf("%s: read container from stdin: %v", fallback.CommandRegister, err)}
	}
	stored, err := daemon.RegisterOffline(ctx, *opts, c)
	if err != nil {
		return offlineExit(err)
	}
	return json.NewEncoder(stdout).Encode(stored)
}

// runUnregisterOffline records that a container is gone while no engine
// answers (hidden).
func runUnregisterOffline(ctx context.Context, args []string) error {
	fs, opts, timeout, id := offlineFlags(fallback.CommandUnregister)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usageError{fallback.CommandUnregister + ": --id is required"}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return offlineExit(daemon.UnregisterOffline(ctx, *opts, *id))
}

func offlineExit(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, api.ErrCannotEnforce):
		return exitError{fallback.ExitCannotEnforce, err}
	case errors.Is(err, api.ErrNotFound):
		return exitError{fallback.ExitNotFound, err}
	}
	return err
}
