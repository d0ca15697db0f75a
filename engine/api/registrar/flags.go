package registrar

import (
	"flag"
	"fmt"
	"strings"
	"unicode"
)

// Names of the fail-policy flags every registrar and installer takes.
const (
	FlagFailMode           = "fail-mode"
	FlagFailOpenNamespaces = "fail-open-namespaces"
	FlagEngineNamespace    = "engine-namespace"
)

// Flags holds the fail-policy flags of one command line.
type Flags struct {
	mode, openNamespaces, engineNamespace string
}

// AddFlags registers --fail-mode, --fail-open-namespaces and
// --engine-namespace on fs, with the defaults FailOpen, none and
// DefaultEngineNamespace.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.mode, FlagFailMode, string(FailOpen), "when the engine cannot register a container: open (start it unenforced) or closed (refuse it)")
	fs.StringVar(&f.openNamespaces, FlagFailOpenNamespaces, "", "comma-separated namespaces that fail open even in closed mode")
	fs.StringVar(&f.engineNamespace, FlagEngineNamespace, DefaultEngineNamespace, "holdfast's own namespace, always fail-open")
	return f
}

// Settings are the settings the flags describe; an error names the flag.
func (f *Flags) Settings() (Settings, error) {
	mode, err := ParseFailMode(f.mode)
	if err != nil {
		return Settings{}, fmt.Errorf("--%s: %w", FlagFailMode, err)
	}
	return Settings{FailMode: mode, FailOpenNamespaces: ParseNamespaceList(f.openNamespaces), EngineNamespace: f.engineNamespace}, nil
}

// ParseNamespaceList splits a namespace list at commas and white space
// (namespace names hold neither), dropping empty items.
func ParseNamespaceList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}
