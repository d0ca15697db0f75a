package redact

import (
	"slices"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

const redteamFilters = `apiVersion: holdfast.dev/v1alpha1
kind: RedactionFilter
metadata: {name: mysql}
spec:
  argFlags: [--password, -p]
  binaries: [/usr/bin/mysql]
`

// Red team: a secret in argv reaches the events through a spelling of the
// binary or the flag the filter did not foresee. Every sink (events file,
// holdfast events JSON and text) writes what Apply left.
func TestRedteamSecretsThroughOtherSpellings(t *testing.T) {
	set := loadSet(t, redteamFilters)
	for _, tc := range []struct {
		name, binary string
		args         []string
	}{
		// The binary is the path execve was given: the process chooses it.
		{"merged-/usr symlink", "/bin/mysql", []string{"mysql", "--password", "hunter2"}},
		{"relative path", "./mysql", []string{"mysql", "--password=hunter2"}},
		{"unclean path", "/usr/bin//mysql", []string{"mysql", "-phunter2"}},
		{"dot-dot path", "/usr/lib/../bin/mysql", []string{"mysql", "-p", "hunter2"}},
		// getopt_long takes an unambiguous prefix of a long option.
		{"abbreviated long flag", "/usr/bin/mysql", []string{"mysql", "--passw=hunter2"}},
		{"abbreviated long flag, next element", "/usr/bin/mysql", []string{"mysql", "--pass", "hunter2"}},
		// getopt bundles one-letter options: -v -p hunter2.
		{"bundled short flags", "/usr/bin/mysql", []string{"mysql", "-vphunter2"}},
		{"bundled short flags, next element", "/usr/bin/mysql", []string{"mysql", "-vp", "hunter2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &api.Event{Process: &api.Process{Binary: tc.binary, Args: slices.Clone(tc.args)},
				Ancestors: []api.Process{{Binary: tc.binary, Args: slices.Clone(tc.args)}}}
			set.Apply(ev)
			for _, p := range append([]api.Process{*ev.Process}, ev.Ancestors...) {
				if got := strings.Join(p.Args, " "); strings.Contains(got, "hunter2") {
					t.Fatalf("secret left in %q (binary %s)", got, tc.binary)
				}
			}
			if !slices.Equal(ev.RedactedBy, []string{"mysql"}) {
				t.Fatalf("redactedBy = %v, want [mysql]", ev.RedactedBy)
			}
		})
	}
	// The scope still holds: another program keeps its arguments.
	ev := &api.Event{Process: &api.Process{Binary: "/usr/bin/psql", Args: []string{"psql", "--password", "x"}}}
	set.Apply(ev)
	if ev.Process.Args[2] != "x" || len(ev.RedactedBy) != 0 {
		t.Fatalf("a filter scoped to mysql changed psql: %v by %v", ev.Process.Args, ev.RedactedBy)
	}
}
