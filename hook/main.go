package hook

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/api/ocihook"
	"github.com/holdfast-dev/holdfast/hook/decisionlog"
	"github.com/holdfast-dev/holdfast/hook/hookconfig"
)

// ExitUsage is the status for a broken command line or config file.
const ExitUsage = 2

// Main is a whole hook run from its command line (holdfast oci-hook: the
// runs holdfast-oci-hook's fast path hands over). started is when the run
// began, in the process that first took it: the deadline and the engine's
// share of it count from then. offline registers without the engine for
// the config given. It returns the exit status.
func Main(started time.Time, args []string, stdin io.Reader, stderr io.Writer, offline func(hookconfig.Config) Engine) int {
	stageName, cfg, _, err := hookconfig.FromArgs(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "holdfast-oci-hook: %s\n", decisionlog.OneLine(err.Error()))
		return ExitUsage
	}
	stage, err := ocihook.ParseStage(stageName)
	if err != nil {
		fmt.Fprintf(stderr, "holdfast-oci-hook: --stage: %s\n", decisionlog.OneLine(err.Error()))
		return ExitUsage
	}
	ctx := WithDeadline(cfg.Deadline(started))
	h := &Hook{
		Stage:   stage,
		Config:  cfg,
		Started: started,
		Engine:  &api.Client{Socket: cfg.Socket},
		// A create run goes whole to the engine on a connection of its own.
		Forward: api.OneShot{Socket: cfg.Socket},
		// The slow path: the container registered without the engine
		// when the engine cannot be reached.
		Offline: offline(cfg),
	}
	d := h.Run(ctx, stdin)
	if err := AppendLog(cfg.Log, stderr, d); err != nil {
		fmt.Fprintf(stderr, "holdfast-oci-hook: %v\n", err)
	}
	if line := d.StderrLine(); line != "" {
		io.WriteString(stderr, line)
	}
	return d.ExitCode()
}
