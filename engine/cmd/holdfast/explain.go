package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/holdfast-dev/holdfast/engine/api"
)

// runExplain prints, for each exec rule selecting a container, what it
// resolves to in that container's root and why it might not do what it says.
func runExplain(ctx context.Context, client func() *api.Client, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	id := fs.String("id", "", "container id (required)")
	output := fs.String("o", "text", "output format: text or json")
	if err := parseWithOutput(fs, args, output); err != nil {
		return err
	}
	if *id == "" {
		return usageError{"containers explain: --id is required"}
	}
	ex, err := client().Explain(ctx, *id)
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(stdout, ex)
	}
	c := ex.Container
	fmt.Fprintf(stdout, "container %s (cgroup %d), policies: %s\n", c.ID, c.CgroupID, policiesWithModes(c.Policies, ex.PolicyModes))
	if ex.RootError != "" {
		fmt.Fprintf(stdout, "root: not resolvable: %s\n", ex.RootError)
	} else {
		fmt.Fprintf(stdout, "root: %s\n", ex.Root)
	}
	if len(c.Entrypoint) > 0 {
		fmt.Fprintf(stdout, "entrypoint: %s%s\n", strings.Join(c.Entrypoint, " "), arrow(c.Entrypoint[0], ex.Entrypoint))
	}
	if len(ex.Rules) == 0 {
		fmt.Fprintln(stdout, "no exec rules")
	}
	for _, r := range ex.Rules {
		state := ""
		if r.Enforced {
			state = " [denied by identity]"
		}
		if r.Mode == api.ModeAudit {
			state += " [audit: recorded, not refused]"
		}
		fmt.Fprintf(stdout, "%s %s: %s%s%s\n", r.Policy, r.Field, r.Rule, arrow(r.Rule, r.File), state)
		for _, w := range r.Warnings {
			fmt.Fprintf(stdout, "  warning: %s\n", w)
		}
	}
	for _, w := range ex.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return nil
}

// policiesWithModes renders "a (audit), b (enforce)".
func policiesWithModes(names []string, modes map[string]string) string {
	if len(names) == 0 {
		return orNone(names)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if m := modes[n]; m != "" {
			out[i] += " (" + m + ")"
		}
	}
	return strings.Join(out, ", ")
}

// arrow renders "→ /usr/bin/dash, 254:1:1234" (or "→ nothing").
func arrow(from string, f *api.ResolvedFile) string {
	if f == nil {
		return " → nothing in this image"
	}
	if f.Target == strings.TrimSuffix(from, "/") || from == "/" {
		return fmt.Sprintf(" → %s", f.ID)
	}
	return fmt.Sprintf(" → %s, %s", f.Target, f.ID)
}
