package bpf

import (
	"fmt"
	"slices"
)

// compileAncestors makes the exec_rules entries that give each ancestor
// binary of rs its class bit: the exec programs look up the path hash of
// every binary a process of the ruleset runs.
func compileAncestors(rs Ruleset, key HashKey) ([]execEntry, error) {
	if len(rs.Ancestors) > MaxAncestorClasses {
		return nil, fmt.Errorf("ruleset %d: %d ancestor binaries, at most %d", rs.ID, len(rs.Ancestors), MaxAncestorClasses)
	}
	var out []execEntry
	for i, comps := range rs.Ancestors {
		if err := checkComponents(ExecRule{Kind: ExecExact, Components: comps}); err != nil {
			return nil, fmt.Errorf("ancestor %d: %w", i, err)
		}
		k := holdfastExecKey{Ruleset: rs.ID, Kind: execAncestor, Hash: PathHash(key, comps)}
		out = append(out, execEntry{key: k, value: holdfastExecValue{From: 1 << i}})
	}
	for _, r := range rs.Connect {
		if r.From>>len(rs.Ancestors) != 0 {
			return nil, fmt.Errorf("connect rule id %d: ancestor classes %#x name none of the %d ancestors", r.RuleID, r.From, len(rs.Ancestors))
		}
	}
	return out, nil
}

// mergeExecEntries folds entries with one key (sorted by key, then rule
// ID) into one, reported by the lowest rule ID: scoped rules of one path
// add up their classes, as does an ancestor binary named twice. Unscoped
// rules have keys of their own and are looked up first. Enforcing entries
// sort first: an audited rule's classes never join theirs (they would be
// enforced under the enforcing rule's ID), so its would-be refusals on
// that path are left out.
func mergeExecEntries(entries []execEntry) []execEntry {
	var out []execEntry
	for _, x := range entries {
		if n := len(out); n > 0 && out[n-1].key == x.key {
			if x.audit == out[n-1].audit {
				out[n-1].value.From |= x.value.From
			}
			continue
		}
		out = append(out, x)
	}
	return slices.Clip(out)
}
