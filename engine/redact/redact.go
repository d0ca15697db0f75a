// Package redact removes secrets from events before they leave the engine:
// RedactionFilter documents, read from the policy files, name argument
// patterns, argument flags and environment keys whose values are replaced
// by Mask in the argv and environment of an event's process and its
// ancestors. A Set is immutable; a reload builds a new one.
//
// The engine and the holdfast command import it.
package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/engine/policy"
)

// Mask replaces every redacted value.
const Mask = "*****"

// APIVersion of RedactionFilter documents, the same as policies'.
const APIVersion = policy.APIVersion

// document is one RedactionFilter as written.
type document struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   policy.Metadata `json:"metadata"`
	Spec       *Spec           `json:"spec"`
}

// Spec is what one filter redacts.
type Spec struct {
	// Args are regular expressions matched against each argv element; the
	// text of every capture group of a match is replaced.
	Args []string `json:"args,omitempty"`
	// ArgFlags are flags whose value is replaced: the next element
	// ("--password x"), the part after "=" ("--password=x") and, for a
	// one-letter flag, the rest of the element ("-px").
	ArgFlags []string `json:"argFlags,omitempty"`
	// EnvKeys are path.Match globs over environment variable names whose
	// values are replaced (when the engine captures environments).
	EnvKeys []string `json:"envKeys,omitempty"`
	// Binaries, when given, limit the filter to processes running one of
	// these files: absolute paths or path.Match globs.
	Binaries []string `json:"binaries,omitempty"`
}

// Filter is one validated RedactionFilter.
type Filter struct {
	Name string
	File string
	Spec Spec

	args       []*regexp.Regexp
	failClosed bool
}

// Set is the filters in force, sorted by name.
type Set struct {
	filters []*Filter
}

// Empty is the set without filters.
func Empty() *Set { return &Set{} }

// Filters returns the set's filters sorted by name.
func (s *Set) Filters() []*Filter { return slices.Clone(s.filters) }

// LoadDir reads the RedactionFilter documents of every policy file in dir.
// Any bad filter fails the load, with file and field errors, so the caller
// keeps the set it had.
func LoadDir(dir string) (*Set, error) {
	files, err := policy.Files(dir)
	if err != nil {
		return nil, fmt.Errorf("load redaction filters: %w", err)
	}
	var errs []error
	var filters []*Filter
	for _, f := range files {
		fs, err := ParseFile(f)
		errs = append(errs, err)
		filters = append(filters, fs...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewSet(filters...)
}

// ParseFile reads the RedactionFilter documents of one policy file.
func ParseFile(path string) ([]*Filter, error) {
	docs, err := policy.FileDocuments(path, policy.KindRedactionFilter)
	if err != nil {
		return nil, err
	}
	var errs []error
	var out []*Filter
	for _, d := range docs {
		f, derrs := parseDocument(d)
		errs = append(errs, derrs...)
		if f != nil {
			out = append(out, f)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// NewSet checks that filter names are unique and sorts them.
func NewSet(filters ...*Filter) (*Set, error) {
	seen := map[string]*Filter{}
	var errs []error
	for _, f := range filters {
		if prev, dup := seen[f.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: metadata.name: redaction filter %q is already defined in %s", f.File, f.Name, prev.File))
			continue
		}
		seen[f.Name] = f
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Set{filters: slices.Clone(filters)}
	slices.SortFunc(s.filters, func(a, b *Filter) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

// flagName is what an argFlags entry must look like.
var flagName = regexp.MustCompile(`^--?[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// metadataName is a DNS-1123 subdomain, like a policy's name.
var metadataName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

func parseDocument(d policy.Document) (*Filter, []error) {
	var errs []error
	addf := func(field, format string, args ...any) {
		errs = append(errs, d.Errorf(field, format, args...))
	}
	var doc document
	dec := json.NewDecoder(bytes.NewReader(d.JSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		addf(decodeField(err), "%s", decodeMessage(err))
		return nil, errs
	}
	if doc.APIVersion != APIVersion {
		addf("apiVersion", "%q is not supported (want %q)", doc.APIVersion, APIVersion)
	}
	if !metadataName.MatchString(doc.Metadata.Name) || len(doc.Metadata.Name) > 253 {
		addf("metadata.name", "%q is not a valid name (lower-case letters, digits, '-' and '.')", doc.Metadata.Name)
	}
	if doc.Spec == nil {
		addf("spec", "required")
		return nil, errs
	}
	sp := *doc.Spec
	f := &Filter{Name: doc.Metadata.Name, File: d.File(), Spec: sp}
	for i, a := range sp.Args {
		field := fmt.Sprintf("spec.args[%d]", i)
		re, err := regexp.Compile(a)
		switch {
		case err != nil:
			addf(field, "not a regular expression: %v", err)
		case re.NumSubexp() == 0:
			addf(field, "%q has no capture group: only the text of capture groups is replaced", a)
		default:
			f.args = append(f.args, re)
		}
	}
	for i, fl := range sp.ArgFlags {
		if !flagName.MatchString(fl) {
			addf(fmt.Sprintf("spec.argFlags[%d]", i), "%q is not a flag (want -x or --name)", fl)
		}
	}
	for i, k := range sp.EnvKeys {
		if _, err := path.Match(k, ""); err != nil || k == "" || strings.Contains(k, "=") {
			addf(fmt.Sprintf("spec.envKeys[%d]", i), "%q is not a glob over variable names", k)
		}
	}
	for i, b := range sp.Binaries {
		if _, err := path.Match(b, ""); err != nil || !path.IsAbs(b) {
			addf(fmt.Sprintf("spec.binaries[%d]", i), "%q is not an absolute path or glob", b)
		}
	}
	if len(sp.Args)+len(sp.ArgFlags)+len(sp.EnvKeys) == 0 {
		addf("spec", "redacts nothing: give args, argFlags or envKeys")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

// decodeField names the field a strict decode failed on, when it says.
func decodeField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}

func decodeMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("must be %s, got %s", te.Type, te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// Apply redacts ev's process and ancestors in place and records in
// ev.RedactedBy the filters that changed something.
func (s *Set) Apply(ev *api.Event) {
	if s == nil || len(s.filters) == 0 {
		return
	}
	changed := map[string]bool{}
	procs := make([]*api.Process, 0, 1+len(ev.Ancestors))
	if ev.Process != nil {
		procs = append(procs, ev.Process)
	}
	for i := range ev.Ancestors {
		procs = append(procs, &ev.Ancestors[i])
	}
	for _, p := range procs {
		for _, f := range s.filters {
			if f.redact(p) {
				changed[f.Name] = true
			}
		}
	}
	for name := range changed {
		if !slices.Contains(ev.RedactedBy, name) {
			ev.RedactedBy = append(ev.RedactedBy, name)
		}
	}
	slices.Sort(ev.RedactedBy)
}

// redact applies f to one process and says whether it changed anything.
func (f *Filter) redact(p *api.Process) bool {
	if f.failClosed {
		return maskAll(p)
	}
	if !f.covers(p.Binary) {
		return false
	}
	changed := false
	if len(p.Args) > 0 && (len(f.args) > 0 || len(f.Spec.ArgFlags) > 0) {
		// The slice may be shared with other copies of the event: write a copy.
		args := slices.Clone(p.Args)
		if f.redactArgs(args) {
			p.Args, changed = args, true
		}
	}
	if len(p.Env) > 0 && len(f.Spec.EnvKeys) > 0 {
		env := slices.Clone(p.Env)
		if f.redactEnv(env) {
			p.Env, changed = env, true
		}
	}
	return changed
}

// covers says whether f applies to a process running binary, the path its
// execve was given: the process's own choice (/bin/mysql through the
// merged-/usr symlink, ./mysql, /usr/bin//mysql). So a scope entry also
// matches by file name, and a path that names no place (relative) is
// covered: a filter rather masks too much than lets a secret out.
func (f *Filter) covers(binary string) bool {
	if len(f.Spec.Binaries) == 0 {
		return true
	}
	clean := path.Clean(binary)
	if !path.IsAbs(clean) {
		return true
	}
	for _, b := range f.Spec.Binaries {
		if ok, _ := path.Match(b, clean); ok {
			return true
		}
		if base := path.Base(b); base != "*" {
			if ok, _ := path.Match(base, path.Base(clean)); ok {
				return true
			}
		}
	}
	return false
}

func (f *Filter) redactArgs(args []string) bool {
	changed := false
	for i, a := range args {
		for _, re := range f.args {
			a = maskGroups(re, a)
		}
		if a != args[i] {
			args[i], changed = a, true
		}
	}
	for i := 0; i < len(args); i++ {
		for _, fl := range f.Spec.ArgFlags {
			// The element up to the value, and whether the value is the
			// next element.
			keep, next, ok := flagValue(fl, args[i])
			switch {
			case !ok:
			case next:
				if i+1 < len(args) && args[i+1] != Mask {
					args[i+1], changed = Mask, true
				}
			case args[i][len(keep):] != Mask:
				args[i], changed = keep+Mask, true
			}
		}
	}
	return changed
}

// flagValue says whether element a gives flag fl a value, and where: after
// keep in a itself, or in the next element. It reads a as getopt does: a
// long flag may be abbreviated ("--passw=x" for --password), one-letter
// flags may be bundled ("-vpx", "-vp x").
func flagValue(fl, a string) (keep string, next, ok bool) {
	if isShortFlag(fl) {
		if len(a) < 2 || a[0] != '-' || a[1] == '-' {
			return "", false, false
		}
		at := strings.IndexByte(a[1:], fl[1])
		if at < 0 {
			return "", false, false
		}
		keep = a[:at+2]
		return keep, keep == a, true
	}
	name, _, hasValue := strings.Cut(a, "=")
	if !strings.HasPrefix(name, "-") || len(name) < 3 || !strings.HasPrefix(fl, name) {
		return "", false, false
	}
	if hasValue {
		return name + "=", false, true
	}
	return "", true, true
}

// isShortFlag: "-p", whose value may follow without a separator.
func isShortFlag(fl string) bool { return len(fl) == 2 && fl[0] == '-' && fl[1] != '-' }

// maskGroups replaces the text of every capture group of every match of re
// in s. Nested groups are covered by their outermost group.
func maskGroups(re *regexp.Regexp, s string) string {
	matches := re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		for g := 2; g+1 < len(m); g += 2 {
			start, end := m[g], m[g+1]
			if start < 0 || start < last || start == end {
				continue // unmatched, nested in a group already masked, or empty
			}
			b.WriteString(s[last:start])
			b.WriteString(Mask)
			last = end
		}
	}
	b.WriteString(s[last:])
	return b.String()
}

func (f *Filter) redactEnv(env []string) bool {
	changed := false
	for i, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == Mask {
			continue
		}
		for _, g := range f.Spec.EnvKeys {
			if m, _ := path.Match(g, k); m {
				env[i], changed = k+"="+Mask, true
				break
			}
		}
	}
	return changed
}

// FailClosedName names the set used while no valid filters are known.
const FailClosedName = "holdfast-fail-closed"

// FailClosed is the set for an engine that has no valid filters to apply
// (they are invalid and no earlier good set was saved): it masks every
// argument after argv[0] and every environment value, so a typo in a
// filter never lets a secret out.
func FailClosed() *Set {
	return &Set{filters: []*Filter{{Name: FailClosedName, failClosed: true}}}
}

func maskAll(p *api.Process) bool {
	changed := false
	if len(p.Args) > 1 {
		args := []string{p.Args[0]}
		for range p.Args[1:] {
			args = append(args, Mask)
		}
		p.Args, changed = args, true
	}
	if len(p.Env) > 0 {
		env := make([]string, len(p.Env))
		for i, kv := range p.Env {
			k, _, _ := strings.Cut(kv, "=")
			env[i] = k + "=" + Mask
		}
		p.Env, changed = env, true
	}
	return changed
}
