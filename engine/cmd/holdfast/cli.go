package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/daemon"
	"github.com/holdfast-dev/holdfast/engine/policy"
	"github.com/holdfast-dev/holdfast/engine/redact"
)

// labelFlags collects repeated --label k=v.
type labelFlags map[string]string

func (l labelFlags) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", v)
	}
	l[k] = val
	return nil
}

// parseWithOutput is parse for a command with -o: it checks the format too.
func parseWithOutput(fs *flag.FlagSet, args []string, output *string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	return checkOutput(*output)
}

func checkOutput(format string) error {
	if format != "" && format != "json" && format != "text" {
		return usageError{fmt.Sprintf("-o %q: want text or json", format)}
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status")
	socket := fs.String("socket", defaultSocket, "engine socket")
	output := fs.String("o", "text", "output format: text or json")
	ready := fs.Bool("ready", false, "only say whether the engine is ready; exit status 1 with the reason when not (probes)")
	if err := parseWithOutput(fs, args, output); err != nil {
		return err
	}
	st, err := (&api.Client{Socket: *socket}).Status(ctx)
	if *ready {
		return reportReady(st, err, *socket, stdout)
	}
	if err != nil {
		return err
	}
	if *output == "json" {
		return writeJSON(stdout, st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "engine:\t%s (bpf ABI %s)\n", st.Version, st.ABI)
	origin := "loaded by this engine"
	if st.Adopted {
		origin = "adopted from pins"
	}
	fmt.Fprintf(tw, "programs:\t%s under %s\n", origin, st.BPFDir)
	fmt.Fprintf(tw, "cgroup v2:\t%s (%s)\n", st.CgroupRoot, st.CgroupMode)
	for _, c := range st.Controls {
		fmt.Fprintf(tw, "control %s:\t%s\t%s\n", c.Name, c.Mode, c.Reason)
	}
	for _, u := range st.Uncovered {
		fmt.Fprintf(tw, "exec uncovered:\t%s\n", u)
	}
	fmt.Fprintf(tw, "containers:\t%d\n", st.Containers)
	fmt.Fprintf(tw, "rulesets:\t%d\n", st.Rulesets)
	n := st.Counters
	fmt.Fprintf(tw, "exec:\t%d checked, %d denied (%d unresolvable paths)\n", n.ExecChecked, n.ExecDenied, n.ExecUnresolved)
	fmt.Fprintf(tw, "connect:\t%d checked, %d refused\n", n.ConnectChecked, n.ConnectRefused)
	if n.Audited > 0 {
		fmt.Fprintf(tw, "audited:\t%d would have been denied (audit-mode rules; let through)\n", n.Audited)
	}
	if n.EventsLost > 0 {
		fmt.Fprintf(tw, "events lost:\t%d (ring buffer full; counted in summaries)\n", n.EventsLost)
	}
	if n.DenialsUntracked > 0 {
		fmt.Fprintf(tw, "denials untracked:\t%d (denials map full; no per-container counts)\n", n.DenialsUntracked)
	}
	for _, m := range st.Maps {
		fill := fmt.Sprintf("%d / %d entries", m.Entries, m.Capacity)
		switch {
		case m.Name == bpf.MapEvents:
			fill = fmt.Sprintf("%d bytes", m.Capacity)
		case m.Name == bpf.MapNetPrefixes:
			fill = fmt.Sprintf("%d entries in each ruleset's trie, per family", m.Capacity)
		case m.Capacity > 0:
			fill += fmt.Sprintf(" (%d%%)", uint64(m.Entries)*100/uint64(m.Capacity))
		}
		if m.Requested != m.Capacity {
			fill += fmt.Sprintf("; configured %d, pinned map keeps %d until uninstall", m.Requested, m.Capacity)
		}
		fmt.Fprintf(tw, "map %s:\t%s\n", m.Name, fill)
	}
	printCRIStatus(tw, st)
	for _, o := range st.Orphans {
		fmt.Fprintf(tw, "orphaned:\t%s\tcgroup %s, ruleset %d: enforced, no registration\n", o.ID, o.Path, o.Ruleset)
	}
	for _, p := range st.Policies {
		fmt.Fprintf(tw, "policy:\t%s\t%s\t%s\n", p.Name, p.Mode, p.File)
	}
	for _, f := range st.PolicyErrors {
		for _, msg := range f.Errors {
			fmt.Fprintf(tw, "policy refused:\t%s\t%s\n", f.File, msg)
		}
	}
	if st.PolicyError != "" && len(st.PolicyErrors) == 0 {
		fmt.Fprintf(tw, "policy error:\t%s\n", st.PolicyError)
	}
	if st.Ready {
		fmt.Fprintf(tw, "ready:\tyes\n")
	} else {
		fmt.Fprintf(tw, "ready:\tno: %s\n", st.NotReady)
	}
	if len(st.RedactionFilters) > 0 {
		fmt.Fprintf(tw, "redaction filters:\t%s\n", strings.Join(st.RedactionFilters, ", "))
	}
	if st.EnvCapture != "" {
		fmt.Fprintf(tw, "environment capture:\t%s\n", st.EnvCapture)
	}
	if st.RedactionError != "" {
		fmt.Fprintf(tw, "redaction error:\t%s\n", st.RedactionError)
	}
	if st.EventsFile != "" {
		fmt.Fprintf(tw, "events file:\t%s\n", st.EventsFile)
	}
	fmt.Fprintf(tw, "event subscribers:\t%d\n", st.EventSubscribers)
	for _, p := range st.Pinned {
		fmt.Fprintf(tw, "pinned %s:\t%s\tid %d\n", p.Kind, p.Path, p.ID)
	}
	return tw.Flush()
}

func runContainers(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"containers: want add, remove, list or explain"}
	}
	fs := newFlags("containers " + args[0])
	socket := fs.String("socket", defaultSocket, "engine socket")
	client := func() *api.Client { return &api.Client{Socket: *socket} }
	switch args[0] {
	case "add":
		var c api.Container
		labels := labelFlags{}
		fs.StringVar(&c.ID, "id", "", "container id (required)")
		fs.StringVar(&c.CgroupPath, "cgroup-path", "", "cgroup v2 directory, or path relative to the v2 root (required)")
		fs.StringVar(&c.Namespace, "namespace", "", "pod namespace")
		fs.StringVar(&c.Pod, "pod", "", "pod name")
		fs.StringVar(&c.PodUID, "pod-uid", "", "pod uid")
		fs.Var(labels, "label", "pod label key=value (repeatable)")
		fs.StringVar(&c.Name, "container", "", "container name")
		fs.StringVar(&c.Image, "image", "", "image reference")
		fs.IntVar(&c.Pid, "pid", 0, "a process of the container, whose root exec rules are resolved in (default: any process of the cgroup)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if c.ID == "" || c.CgroupPath == "" {
			return usageError{"containers add: --id and --cgroup-path are required"}
		}
		if len(labels) > 0 {
			c.Labels = labels
		}
		c.Source = "cli"
		got, err := client().Register(ctx, c)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "registered %s (cgroup %d), policies: %s\n", got.ID, got.CgroupID, orNone(got.Policies))
		return nil
	case "remove":
		id := fs.String("id", "", "container id (required)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *id == "" {
			return usageError{"containers remove: --id is required"}
		}
		if err := client().Unregister(ctx, *id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "unregistered %s\n", *id)
		return nil
	case "explain":
		return runExplain(ctx, client, fs, args[1:], stdout)
	case "list":
		output := fs.String("o", "text", "output format: text or json")
		if err := parseWithOutput(fs, args[1:], output); err != nil {
			return err
		}
		cs, err := client().List(ctx)
		if err != nil {
			return err
		}
		if *output == "json" {
			if cs == nil {
				cs = []api.Container{}
			}
			return writeJSON(stdout, cs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCGROUP\tNAMESPACE\tPOD\tCONTAINER\tSOURCE\tPOLICIES")
		for _, c := range cs {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.CgroupID, dash(c.Namespace), dash(c.Pod), dash(c.Name), c.Source, orNone(c.Policies))
		}
		return tw.Flush()
	}
	return usageError{fmt.Sprintf("containers: unknown subcommand %q", args[0])}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(ps []string) string {
	if len(ps) == 0 {
		return "none"
	}
	return strings.Join(ps, ",")
}

func runPolicy(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"policy: want validate or reload"}
	}
	switch args[0] {
	case "validate":
		fs := newFlags("policy validate")
		capacity := capacityFlags(fs)
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		return validatePolicies(fs.Args(), capacity, stdout)
	case "reload":
		fs := newFlags("policy reload")
		socket := fs.String("socket", defaultSocket, "engine socket")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		client := &api.Client{Socket: *socket}
		if err := client.Reload(ctx); err != nil {
			return err
		}
		// Filters are refused apart from the policies, which are in force.
		if st, err := client.Status(ctx); err == nil && st.RedactionError != "" {
			return fmt.Errorf("policies reloaded, but redaction filters refused (the previous filters stay): %s", st.RedactionError)
		}
		fmt.Fprintln(stdout, "policies reloaded")
		return nil
	}
	return usageError{fmt.Sprintf("policy: unknown subcommand %q", args[0])}
}

func runUninstall(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "crio":
			return uninstallCRIO(args[1:])
		case "containerd":
			return uninstallContainerd(args[1:])
		}
	}
	fs := newFlags("uninstall")
	bpfDir := fs.String("bpf-dir", defaultBPFDir, "bpffs directory of the pins")
	stateDir := fs.String("state-dir", defaultStateDir, "engine state directory")
	socket := fs.String("socket", defaultSocket, "engine socket (a running engine is refused)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := (&api.Client{Socket: *socket}).Status(ctx); err == nil {
		return fmt.Errorf("uninstall: an engine is running at %s; stop it first (its open links would keep the programs attached)", *socket)
	}
	// An engine on another socket still holds the state dir's lock.
	if _, err := os.Stat(*stateDir); err == nil {
		lock, err := linux.LockFile(filepath.Join(*stateDir, daemon.LockFile))
		if err != nil {
			return fmt.Errorf("uninstall: an engine is running on state dir %s; stop it first: %w", *stateDir, err)
		}
		defer lock.Close()
	}
	if err := bpf.Uninstall(bpf.Layout{Root: *bpfDir}); err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	fmt.Fprintf(stdout, "detached and removed pins under %s\n", *bpfDir)
	// daemon.SequenceFile stays: event numbers never repeat for a state dir.
	for _, sub := range []string{"registry", "policies", daemon.RedactionSnapshot, daemon.ReportedFile, daemon.LockFile} {
		if err := os.RemoveAll(*stateDir + "/" + sub); err != nil {
			return fmt.Errorf("uninstall: remove state: %w", err)
		}
	}
	fmt.Fprintf(stdout, "removed engine state under %s\n", *stateDir)
	return nil
}

func runInstall(args []string) error {
	if len(args) == 0 {
		return usageError{"install: want crio or containerd"}
	}
	switch args[0] {
	case "crio":
		return installCRIO(args[1:])
	case "containerd":
		return installContainerd(args[1:])
	}
	return usageError{fmt.Sprintf("install: unknown target %q (want crio or containerd)", args[0])}
}

// validatePolicies parses files, prints each one's policies and warnings,
// and refuses a policy that alone can never fit maps of capacity c. The
// union of all the files (a container every policy selects) is checked too:
// exceeding it is a warning, since no container may be selected by all.
func validatePolicies(files []string, c bpf.Capacity, stdout io.Writer) error {
	if len(files) == 0 {
		return usageError{"policy validate: no files given"}
	}
	var errs []error
	var all []*policy.Policy
	var filters []*redact.Filter
	for _, file := range files {
		ps, err := policy.ParseFile(file)
		fs, ferr := redact.ParseFile(file)
		if err := errors.Join(err, ferr); err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, ps...)
		filters = append(filters, fs...)
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = p.Name
			if p.Audit() {
				names[i] += " (audit)"
			}
		}
		for _, f := range fs {
			names = append(names, "redaction filter "+f.Name)
		}
		sort.Strings(names)
		fmt.Fprintf(stdout, "%s: ok (%s)\n", file, strings.Join(names, ", "))
		for _, p := range ps {
			for _, w := range p.Warnings() {
				fmt.Fprintf(stdout, "%s: warning: %s\n", file, w)
			}
		}
	}
	if _, err := redact.NewSet(filters...); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		set, err := policy.NewSet(all...)
		if err != nil {
			errs = append(errs, err)
		} else {
			for _, p := range set.Policies() {
				rs, err := set.Compile(1, []*policy.Policy{p})
				if err == nil {
					err = c.Fits(rs)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: policy %s can never be enforced: %w", p.File, p.Name, err))
				}
			}
			if rs, err := set.Compile(1, set.Policies()); err == nil && len(set.Policies()) > 1 {
				if err := c.Fits(rs); err != nil {
					fmt.Fprintf(stdout, "warning: a container selected by all these policies could not be enforced: %v\n", err)
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("policy validation failed:\n%w", errors.Join(errs...))
	}
	return nil
}

// reportReady is `status --ready`: exit status 0 only for an engine that
// answered and says it is ready.
func reportReady(st *api.Status, err error, socket string, stdout io.Writer) error {
	if err != nil {
		return fmt.Errorf("not ready: engine on %s does not answer: %w", socket, err)
	}
	if !st.Ready {
		return fmt.Errorf("not ready: %s", st.NotReady)
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
