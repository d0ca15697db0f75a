package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/holdfast-dev/holdfast/bpf"
)

// A Set is the policies in force, with a rule ID for each of their rules.
// IDs are numbered from 1 over the policies sorted by name and their rules
// in file order, so the same policies always get the same IDs.
type Set struct {
	policies []*Policy // sorted by name
	byName   map[string]*Policy
	firstID  map[*Policy]uint32
	rules    []RuleInfo // rules[id-1]
	digest   string
	// rulesDigest is digest without the policies' modes.
	rulesDigest string
}

// RuleInfo describes one rule, for events and explanations.
type RuleInfo struct {
	ID     uint32
	Policy string
	File   string
	Field  string // where the rule is written, e.g. "spec.exec.deny[0]"
	Kind   string // KindExec, KindExecAllow, KindConnect, KindSocket or KindBind
	// Text is the rule in canonical form: "/bin/sh", "/tmp/",
	// "169.254.169.254/32", "0.0.0.0/0 tcp 6660-6669", "socket raw",
	// "bind tcp 8000-8099".
	Text string
	Mode string // its policy's: ModeEnforce or ModeAudit
	// From are the ancestor binaries a scoped rule applies below, comma
	// separated; empty for a rule that applies to every process.
	From string
}

// Describe is the rule's text with its ancestor scope, for events.
func (r RuleInfo) Describe() string {
	if r.From == "" {
		return r.Text
	}
	return r.Text + " from ancestors " + r.From
}

// NewSet numbers the policies' rules. Policy names must be unique.
func NewSet(policies ...*Policy) (*Set, error) {
	s := &Set{
		byName:  make(map[string]*Policy, len(policies)),
		firstID: make(map[*Policy]uint32, len(policies)),
	}
	var errs []error
	for _, p := range policies {
		if p == nil || p.digest == "" {
			return nil, errors.New("build policy set: policy not produced by Parse")
		}
		if prev, dup := s.byName[p.Name]; dup {
			errs = append(errs, p.loc.errorf("metadata.name", "policy %q is already defined in %s", p.Name, describeLocation(prev)))
			continue
		}
		s.byName[p.Name] = p
		s.policies = append(s.policies, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(s.policies, func(a, b *Policy) int { return strings.Compare(a.Name, b.Name) })

	digest, rulesDigest := sha256.New(), sha256.New()
	for _, p := range s.policies {
		s.firstID[p] = uint32(len(s.rules)) + 1
		for _, r := range p.rules {
			s.rules = append(s.rules, RuleInfo{
				ID:     uint32(len(s.rules)) + 1,
				Policy: p.Name,
				File:   p.File,
				Field:  r.field,
				Kind:   r.kind,
				Text:   r.text,
				Mode:   p.Mode(),
				From:   strings.Join(r.from, ","),
			})
		}
		fmt.Fprintf(digest, "%s\x00%s\n", p.Name, p.digest)
		fmt.Fprintf(rulesDigest, "%s\x00%s\n", p.Name, p.rulesDigest)
	}
	s.digest = "sha256:" + hex.EncodeToString(digest.Sum(nil))
	s.rulesDigest = "sha256:" + hex.EncodeToString(rulesDigest.Sum(nil))
	return s, nil
}

func describeLocation(p *Policy) string {
	if p.loc.documents > 1 {
		return fmt.Sprintf("%s (document %d)", p.File, p.Document)
	}
	return p.File
}

// LoadDir parses every *.yaml and *.yml file in dir, in name order, and
// builds a set from them. Hidden files are skipped (editors and Kubernetes
// ConfigMap volumes put their own there). Any bad file fails the whole
// load, with errors naming each file, so the caller can keep the set it
// had.
func LoadDir(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load policies: %w", err)
	}
	var policies []*Policy
	var errs []error
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || ext != ".yaml" && ext != ".yml" {
			continue
		}
		ps, err := ParseFile(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		policies = append(policies, ps...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return NewSet(policies...)
}

// Policies returns the set's policies sorted by name.
func (s *Set) Policies() []*Policy { return slices.Clone(s.policies) }

// Policy finds a policy by name.
func (s *Set) Policy(name string) (*Policy, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// Digest identifies the set's content: it changes when a policy is added,
// removed, renamed or changed, and so whenever rule IDs may have moved.
func (s *Set) Digest() string { return s.digest }

// RulesDigest is Digest without the policies' modes: it changes whenever
// rule IDs may have moved, and not when only a mode changed.
func (s *Set) RulesDigest() string { return s.rulesDigest }

// Select returns the policies that apply to the container, sorted by name.
func (s *Set) Select(id Identity) []*Policy {
	var out []*Policy
	for _, p := range s.policies {
		if p.Selects(id) {
			out = append(out, p)
		}
	}
	return out
}

// Rule describes the rule with the given ID.
func (s *Set) Rule(id uint32) (RuleInfo, bool) {
	if id == 0 || int64(id) > int64(len(s.rules)) {
		return RuleInfo{}, false
	}
	return s.rules[id-1], true
}

// Rules describes the rules of one policy of the set, in file order.
func (s *Set) Rules(p *Policy) []RuleInfo {
	first, ok := s.firstID[p]
	if !ok {
		return nil
	}
	return slices.Clone(s.rules[first-1 : int(first-1)+len(p.rules)])
}

// Compile builds the ruleset that enforces the union of the policies' rules.
// Identical rules are kept once, under the lowest ID of an enforcing policy
// if one has it (the first such policy by name), else of an audit-mode one.
// If any of the policies has an exec allow list, the ruleset's allow list is
// the union of theirs, and the container runs only what is on it; audit-mode
// policies' lists count only when no enforcing policy has one, and then the
// list only audits. The policies must belong to this set, since its IDs are
// used.
func (s *Set) Compile(rulesetID uint32, policies []*Policy) (bpf.Ruleset, error) {
	ordered := slices.Clone(policies)
	for _, p := range ordered {
		if p == nil {
			return bpf.Ruleset{}, fmt.Errorf("compile ruleset %d: nil policy", rulesetID)
		}
		if s.byName[p.Name] != p {
			return bpf.Ruleset{}, fmt.Errorf("compile ruleset %d: policy %q is not in this set", rulesetID, p.Name)
		}
	}
	// Enforcing policies first: their rule is the one kept of equal rules.
	slices.SortFunc(ordered, func(a, b *Policy) int {
		return cmp.Or(compareModes(a, b), strings.Compare(a.Name, b.Name))
	})
	ordered = slices.Compact(ordered)
	hasAllow := func(p *Policy) bool { return p.hasRule(KindExecAllow) }
	hasExec := func(p *Policy) bool { return p.hasRule(KindExec) || p.hasRule(KindExecAllow) }
	enforcing := func(has func(*Policy) bool) func(*Policy) bool {
		return func(p *Policy) bool { return !p.Audit() && has(p) }
	}
	enforcedAllow := slices.ContainsFunc(ordered, enforcing(hasAllow))
	enforcedExec := slices.ContainsFunc(ordered, enforcing(hasExec))

	// Paths in canonical form: the same text is the same path.
	type execKey struct {
		kind uint32
		text string
		from string
	}
	type netKey struct {
		rule bpf.NetRule
		from string
	}
	// Refusals without a rule: audited when only audit-mode policies
	// have the rules they come from.
	rs := bpf.Ruleset{ID: rulesetID,
		AuditNotAllowed: !enforcedAllow && slices.ContainsFunc(ordered, hasAllow),
		AuditUnresolved: !enforcedExec && slices.ContainsFunc(ordered, hasExec),
	}
	execSeen := make(map[execKey]bool)
	netSeen := make(map[netKey]bool) // keyed with RuleID 0
	classes := ancestorClasses{}
	socketSeen := make(map[string]bool)
	bindSeen := make(map[bpf.BindRule]bool)
	for _, p := range ordered {
		id := s.firstID[p]
		audit := p.Audit()
		for _, r := range p.rules {
			switch r.kind {
			case KindExec, KindExecAllow:
				k := execKey{r.exec.Kind, r.text, strings.Join(r.from, "\x00")}
				// An enforcing allow list is not widened by an audited one.
				skip := r.kind == KindExecAllow && audit && enforcedAllow
				if !execSeen[k] && !skip {
					execSeen[k] = true
					e := r.exec
					e.RuleID, e.Audit = id, audit
					e.From = classes.of(r.from)
					rs.Exec = append(rs.Exec, e)
				}
			case KindConnect:
				k := netKey{r.net, strings.Join(r.from, "\x00")}
				if !netSeen[k] {
					netSeen[k] = true
					n := r.net
					n.RuleID, n.Audit = id, audit
					n.From = classes.of(r.from)
					rs.Connect = append(rs.Connect, n)
				}
			case KindSocket:
				if !socketSeen[r.text] {
					socketSeen[r.text] = true
					for _, sr := range r.sockets {
						sr.RuleID, sr.Audit = id, audit
						rs.Sockets = append(rs.Sockets, sr)
					}
				}
			case KindBind:
				if !bindSeen[r.bind] {
					bindSeen[r.bind] = true
					b := r.bind
					b.RuleID, b.Audit = id, audit
					rs.Bind = append(rs.Bind, b)
				}
			}
			id++
		}
	}
	if len(classes.paths) > bpf.MaxAncestorClasses {
		return bpf.Ruleset{}, fmt.Errorf("compile ruleset %d: the selected policies scope rules to %d ancestor binaries (%s), at most %d per container",
			rulesetID, len(classes.paths), strings.Join(classes.paths, ", "), bpf.MaxAncestorClasses)
	}
	for _, p := range classes.paths {
		components, _, err := bpf.SplitPath(p)
		if err != nil {
			return bpf.Ruleset{}, fmt.Errorf("compile ruleset %d: ancestor %s: %w", rulesetID, p, err)
		}
		rs.Ancestors = append(rs.Ancestors, components)
	}
	for _, p := range ordered {
		rs.ExecEvents = rs.ExecEvents || p.Spec.Events.Exec
	}
	return rs, nil
}

// compareModes orders enforcing policies before audit-mode ones.
func compareModes(a, b *Policy) int {
	switch {
	case a.Audit() == b.Audit():
		return 0
	case !a.Audit():
		return -1
	}
	return 1
}

func (p *Policy) hasRule(kind string) bool {
	return slices.ContainsFunc(p.rules, func(r rule) bool { return r.kind == kind })
}

// MixedModes names the policies' modes when they differ, "" when they are
// all the same: only then do modes change what the policies compile to
// (which of two equal rules is kept, whose allow list counts), so only then
// must a ruleset cache key include them. A switch of the mode of every
// policy of a ruleset changes rule modes in place (bpf.SetAuditModes).
func MixedModes(policies []*Policy) string {
	if !slices.ContainsFunc(policies, (*Policy).Audit) ||
		!slices.ContainsFunc(policies, func(p *Policy) bool { return !p.Audit() }) {
		return ""
	}
	parts := make([]string, len(policies))
	for i, p := range policies {
		parts[i] = p.Name + "=" + p.Mode()
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// ancestorClasses numbers the ancestor binaries of a ruleset's scoped rules
// in the order they are first named: path i is class bit 1<<i.
type ancestorClasses struct {
	paths []string
}

// of is the class mask of a rule's ancestors (0: not scoped). Paths past
// bpf.MaxAncestorClasses are numbered too, and Compile refuses them.
func (a *ancestorClasses) of(from []string) uint8 {
	var mask uint8
	for _, p := range from {
		i := slices.Index(a.paths, p)
		if i < 0 {
			i = len(a.paths)
			a.paths = append(a.paths, p)
		}
		if i < bpf.MaxAncestorClasses {
			mask |= 1 << i
		}
	}
	return mask
}
