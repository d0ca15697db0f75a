// Command holdfast is the engine daemon and its admin CLI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/holdfast-dev/holdfast/engine/api/fallback"
	"github.com/holdfast-dev/holdfast/hook/fastpath"
)

const usage = `holdfast: container security policy from the first instruction

Usage:
  holdfast engine [flags]                 run the engine daemon
  holdfast status [-o json] [--ready]     enforcement mode, pins, policies, containers; --ready for probes
  holdfast containers add --id ID --cgroup-path PATH [identity flags]
  holdfast containers remove --id ID
  holdfast containers list [-o json]
  holdfast containers explain --id ID [-o json]  what each exec rule resolves to in that container
  holdfast policy validate FILE...        check policy files (no engine needed)
  holdfast policy reload                  make the engine re-read its policy dir (or SIGHUP)
  holdfast events [filters] [-o json|text] [--since DURATION|RFC3339]   follow events live
  holdfast install crio|containerd [flags]
  holdfast uninstall crio|containerd [flags]
  holdfast uninstall [--bpf-dir D] [--state-dir D]   detach and remove all pins
  holdfast version
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == fastpath.HandoffCommand {
		os.Exit(runOCIHook(os.Args[2:], os.Stdin, os.Stderr))
	}
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ue usageError
		var ee exitError
		fmt.Fprintln(os.Stderr, "holdfast:", err)
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "engine":
		return runEngine(ctx, rest, stderr)
	case "status":
		return runStatus(ctx, rest, stdout)
	case "containers":
		return runContainers(ctx, rest, stdout)
	case "policy":
		return runPolicy(ctx, rest, stdout)
	case "events":
		return runEvents(ctx, rest, stdout, stderr)
	case "install":
		return runInstall(rest)
	case "uninstall":
		return runUninstall(ctx, rest, stdout)
	case fallback.CommandRegister: // hidden: the registrars' slow path
		return runRegisterOffline(ctx, rest, os.Stdin, stdout)
	case fallback.CommandUnregister:
		return runUnregisterOffline(ctx, rest)
	case "version":
		fmt.Fprintln(stdout, version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	return nil
}
