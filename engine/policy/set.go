package policy

import (
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

	digest := sha256.New()
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
				From:   strings.Join(r.from, ","),
			})
		}
		fmt.Fprintf(digest, "%s\x00%s\n", p.Name, p.digest)
	}
	s.digest = "sha256:" + hex.EncodeToString(digest.Sum(nil))
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
// Identical rules are kept once, under the lowest ID (the first policy by
// name). If any of the policies has an exec allow list, the ruleset's allow
// list is the union of theirs, and the container runs only what is on it. The policies must belong to this set, since its IDs are used.
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
	slices.SortFunc(ordered, func(a, b *Policy) int { return strings.Compare(a.Name, b.Name) })
	ordered = slices.Compact(ordered)

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
	rs := bpf.Ruleset{ID: rulesetID}
	execSeen := make(map[execKey]bool)
	netSeen := make(map[netKey]bool) // keyed with RuleID 0
	classes := ancestorClasses{}
	socketSeen := make(map[string]bool)
	bindSeen := make(map[bpf.BindRule]bool)
	for _, p := range ordered {
		id := s.firstID[p]
		for _, r := range p.rules {
			switch r.kind {
			case KindExec, KindExecAllow:
				k := execKey{r.exec.Kind, r.text, strings.Join(r.from, "\x00")}
				if !execSeen[k] {
					execSeen[k] = true
					e := r.exec
					e.RuleID = id
					e.From = classes.of(r.from)
					rs.Exec = append(rs.Exec, e)
				}
			case KindConnect:
				k := netKey{r.net, strings.Join(r.from, "\x00")}
				if !netSeen[k] {
					netSeen[k] = true
					n := r.net
					n.RuleID = id
					n.From = classes.of(r.from)
					rs.Connect = append(rs.Connect, n)
				}
			case KindSocket:
				if !socketSeen[r.text] {
					socketSeen[r.text] = true
					for _, sr := range r.sockets {
						sr.RuleID = id
						rs.Sockets = append(rs.Sockets, sr)
					}
				}
			case KindBind:
				if !bindSeen[r.bind] {
					bindSeen[r.bind] = true
					b := r.bind
					b.RuleID = id
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
