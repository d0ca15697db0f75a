package install

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// NRIPlugin is the containerd plugin ID of NRI, the same in 1.7 and 2.x.
const NRIPlugin = "io.containerd.nri.v1.nri"

// NRI defaults of containerd 1.7 and 2.x.
const (
	DefaultSocketPath       = "/var/run/nri/nri.sock"
	DefaultPluginPath       = "/opt/nri/plugins"
	DefaultPluginConfigPath = "/etc/nri/conf.d"
)

// Every line holdfast edits carries one of these markers, so Uninstall can
// undo exactly its own edits and nothing else.
const (
	markBegin = "# holdfast: begin (added by holdfast install containerd)"
	markEnd   = "# holdfast: end"
	markAdded = "# holdfast: added"
	markWas   = "# holdfast: was: "
)

// NRISettings is what containerd's config says about NRI.
type NRISettings struct {
	Disabled         bool // disable = true, or listed in disabled_plugins
	SocketPath       string
	PluginPath       string
	PluginConfigPath string
}

// ReadNRI returns the NRI settings of a config, defaults filled in. major
// is containerd's major version: NRI is off by default in 1.x.
func ReadNRI(config []byte, major int) (NRISettings, error) {
	var doc map[string]any
	if err := toml.Unmarshal(config, &doc); err != nil {
		return NRISettings{}, fmt.Errorf("parse containerd config: %w", err)
	}
	s := NRISettings{
		Disabled:         major < 2,
		SocketPath:       DefaultSocketPath,
		PluginPath:       DefaultPluginPath,
		PluginConfigPath: DefaultPluginConfigPath,
	}
	plugins, _ := doc["plugins"].(map[string]any)
	if tbl, ok := plugins[NRIPlugin].(map[string]any); ok {
		if v, ok := tbl["disable"].(bool); ok {
			s.Disabled = v
		}
		for key, dst := range map[string]*string{
			"socket_path": &s.SocketPath, "plugin_path": &s.PluginPath, "plugin_config_path": &s.PluginConfigPath,
		} {
			if v, ok := tbl[key].(string); ok && v != "" {
				*dst = v
			}
		}
	}
	if list, ok := doc["disabled_plugins"].([]any); ok && slices.Contains(list, any(NRIPlugin)) {
		s.Disabled = true
	}
	return s, nil
}

// configVersion is the config's top-level "version" (1 when absent).
func configVersion(config []byte) (int, error) {
	var doc struct {
		Version int `toml:"version"`
	}
	if err := toml.Unmarshal(config, &doc); err != nil {
		return 0, fmt.Errorf("parse containerd config: %w", err)
	}
	if doc.Version == 0 {
		return 1, nil
	}
	return doc.Version, nil
}

// EnableNRI edits a containerd config so NRI is on, changing as little as
// possible and marking each edit. For containerd 1.x it makes sure the NRI
// table says disable = false (adding the table with socket and plugin paths
// if there is none); for 2.x, where NRI is on by default, it only undoes an
// explicit disable. It returns the new config and what changed (nothing on
// a config that already enables NRI).
func EnableNRI(config []byte, major int) ([]byte, []string, error) {
	if major < 1 {
		return nil, nil, fmt.Errorf("enable nri: invalid containerd major version %d", major)
	}
	version, err := configVersion(config)
	if err != nil {
		return nil, nil, fmt.Errorf("enable nri: %w", err)
	}
	lines := splitLines(config)
	var changes []string

	if version < 2 {
		// Version 1 configs name plugins by short ID; holdfast writes
		// version 2 names, which only mean something with version = 2.
		if hasTables(lines) {
			return nil, nil, errors.New("enable nri: config has no version = 2 or 3; migrate it first (containerd config migrate)")
		}
		if major >= 2 {
			// An empty config on 2.x: NRI is already on.
			return config, nil, nil
		}
		lines = append([]string{"version = 2 " + markAdded}, lines...)
		changes = append(changes, "set config version = 2")
	}

	scan, err := scanConfig(lines)
	if err != nil {
		return nil, nil, fmt.Errorf("enable nri: %w", err)
	}

	if i := scan.disabledPlugins; i >= 0 {
		newLine, removed, err := dropFromArrayLine(lines[i], NRIPlugin)
		if err != nil {
			return nil, nil, fmt.Errorf("enable nri: line %d: %w", i+1, err)
		}
		if removed {
			lines[i] = newLine + " " + markWas + lines[i]
			changes = append(changes, fmt.Sprintf("removed %s from disabled_plugins", NRIPlugin))
		}
	}

	switch {
	case scan.nriHeader >= 0 && scan.nriDisable >= 0:
		line := lines[scan.nriDisable]
		key, value, _ := strings.Cut(stripComment(line), "=")
		if strings.TrimSpace(value) != "false" {
			indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
			lines[scan.nriDisable] = indent + strings.TrimSpace(key) + " = false " + markWas + line
			changes = append(changes, fmt.Sprintf("set [plugins.%q] disable = false", NRIPlugin))
		}
	case scan.nriHeader >= 0 && major < 2:
		// The table exists but relies on 1.x's default, disable = true.
		indent := "  "
		if scan.nriHeader+1 < len(lines) {
			if l := lines[scan.nriHeader+1]; strings.TrimSpace(l) != "" {
				indent = l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			}
		}
		lines = slices.Insert(lines, scan.nriHeader+1, indent+"disable = false "+markAdded)
		changes = append(changes, fmt.Sprintf("added disable = false to [plugins.%q]", NRIPlugin))
	case scan.nriHeader < 0 && major < 2:
		lines = append(lines,
			markBegin,
			fmt.Sprintf("[plugins.%q]", NRIPlugin),
			"  disable = false",
			fmt.Sprintf("  socket_path = %q", DefaultSocketPath),
			fmt.Sprintf("  plugin_path = %q", DefaultPluginPath),
			fmt.Sprintf("  plugin_config_path = %q", DefaultPluginConfigPath),
			markEnd,
		)
		changes = append(changes, fmt.Sprintf("added [plugins.%q] with disable = false", NRIPlugin))
	}

	out := config
	if len(changes) > 0 {
		out = joinLines(lines)
	}
	// The line edits must mean what they say to a real TOML parser.
	settings, err := ReadNRI(out, major)
	if err != nil {
		return nil, nil, fmt.Errorf("enable nri: edited config does not parse (edit it by hand): %w", err)
	}
	if settings.Disabled {
		return nil, nil, errors.New("enable nri: config layout not understood, nri still disabled after editing (edit it by hand)")
	}
	return out, changes, nil
}

// RevertNRI undoes EnableNRI's marked edits.
func RevertNRI(config []byte) ([]byte, []string, error) {
	lines := splitLines(config)
	var out []string
	var changes []string
	inBlock := false
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == markBegin:
			if inBlock {
				return nil, nil, fmt.Errorf("revert nri: line %d: nested holdfast block", i+1)
			}
			inBlock = true
			changes = append(changes, fmt.Sprintf("removed the [plugins.%q] table holdfast added", NRIPlugin))
		case trimmed == markEnd:
			if !inBlock {
				return nil, nil, fmt.Errorf("revert nri: line %d: holdfast block end without begin", i+1)
			}
			inBlock = false
		case inBlock:
		case strings.HasSuffix(line, " "+markAdded):
			changes = append(changes, "removed "+strings.TrimSpace(strings.TrimSuffix(line, markAdded)))
		case strings.Contains(line, " "+markWas):
			_, orig, _ := strings.Cut(line, " "+markWas)
			out = append(out, orig)
			changes = append(changes, "restored "+strings.TrimSpace(orig))
		default:
			out = append(out, line)
		}
	}
	if inBlock {
		return nil, nil, errors.New("revert nri: holdfast block has no end marker")
	}
	if len(changes) == 0 {
		return config, nil, nil
	}
	return joinLines(out), changes, nil
}

// configScan locates the lines EnableNRI may edit (-1: absent).
type configScan struct {
	nriHeader       int
	nriDisable      int
	disabledPlugins int
}

func scanConfig(lines []string) (configScan, error) {
	s := configScan{nriHeader: -1, nriDisable: -1, disabledPlugins: -1}
	var table []string
	var lex lexState
	for i, line := range lines {
		if lex.open() {
			lex.feed(line)
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case strings.HasPrefix(trimmed, "[["):
			table = nil // array of tables: none of ours
			continue
		case strings.HasPrefix(trimmed, "["):
			keys, err := parseHeader(stripComment(trimmed))
			if err != nil {
				return s, fmt.Errorf("line %d: %w", i+1, err)
			}
			table = keys
			if slices.Equal(keys, []string{"plugins", NRIPlugin}) {
				if s.nriHeader >= 0 {
					return s, fmt.Errorf("line %d: table [plugins.%q] defined twice", i+1, NRIPlugin)
				}
				s.nriHeader = i
			}
			continue
		}
		key, _, ok := strings.Cut(stripComment(trimmed), "=")
		if !ok {
			return s, fmt.Errorf("line %d: expected key = value: %q", i+1, trimmed)
		}
		key = strings.TrimSpace(key)
		switch {
		case table == nil && key == "disabled_plugins":
			s.disabledPlugins = i
		case slices.Equal(table, []string{"plugins", NRIPlugin}) && key == "disable":
			s.nriDisable = i
		}
		lex.feed(line[strings.Index(line, "=")+1:])
	}
	return s, nil
}

func hasTables(lines []string) bool {
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "[") {
			return true
		}
	}
	return false
}

// lexState follows multi-line strings and arrays across lines so their
// contents are not taken for keys or headers.
type lexState struct {
	depth int    // open [ or { of a value
	ml    string // open """ or ''' delimiter
}

func (l *lexState) open() bool { return l.depth > 0 || l.ml != "" }

func (l *lexState) feed(s string) {
	for i := 0; i < len(s); i++ {
		if l.ml != "" {
			if strings.HasPrefix(s[i:], l.ml) {
				i += len(l.ml) - 1
				l.ml = ""
			}
			continue
		}
		switch c := s[i]; {
		case strings.HasPrefix(s[i:], `"""`) || strings.HasPrefix(s[i:], `'''`):
			l.ml = s[i : i+3]
			i += 2
		case c == '"' || c == '\'':
			// A single-line string: skip to its end.
			for j := i + 1; j < len(s); j++ {
				if c == '"' && s[j] == '\\' {
					j++
					continue
				}
				if s[j] == c {
					i = j
					break
				}
			}
		case c == '#':
			return
		case c == '[' || c == '{':
			l.depth++
		case c == ']' || c == '}':
			l.depth--
		}
	}
}

// parseHeader splits `[a."b.c".d]` into its keys.
func parseHeader(h string) ([]string, error) {
	inner, ok := strings.CutPrefix(strings.TrimSpace(h), "[")
	if !ok {
		return nil, fmt.Errorf("malformed table header %q", h)
	}
	inner, ok = strings.CutSuffix(strings.TrimSpace(inner), "]")
	if !ok {
		return nil, fmt.Errorf("malformed table header %q", h)
	}
	var keys []string
	rest := strings.TrimSpace(inner)
	for {
		var key string
		switch {
		case strings.HasPrefix(rest, `"`):
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				return nil, fmt.Errorf("malformed table header %q", h)
			}
			k, err := strconv.Unquote(rest[:end+1])
			if err != nil {
				return nil, fmt.Errorf("malformed table header %q: %w", h, err)
			}
			key, rest = k, rest[end+1:]
		case strings.HasPrefix(rest, "'"):
			end := strings.IndexByte(rest[1:], '\'')
			if end < 0 {
				return nil, fmt.Errorf("malformed table header %q", h)
			}
			key, rest = rest[1:end+1], rest[end+2:]
		default:
			end := strings.IndexAny(rest, ". \t")
			if end < 0 {
				end = len(rest)
			}
			key, rest = rest[:end], rest[end:]
			if key == "" {
				return nil, fmt.Errorf("malformed table header %q", h)
			}
		}
		keys = append(keys, key)
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return keys, nil
		}
		if rest[0] != '.' {
			return nil, fmt.Errorf("malformed table header %q", h)
		}
		rest = strings.TrimSpace(rest[1:])
	}
}

// stripComment drops a trailing comment outside strings.
func stripComment(line string) string {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return strings.TrimRight(line[:i], " \t")
		}
	}
	return line
}

// dropFromArrayLine removes a string from a one-line array assignment.
func dropFromArrayLine(line, item string) (string, bool, error) {
	key, value, _ := strings.Cut(stripComment(line), "=")
	value = strings.TrimSpace(value)
	if !strings.HasPrefix(value, "[") || !strings.HasSuffix(value, "]") {
		return "", false, fmt.Errorf("disabled_plugins spans several lines; remove %q from it by hand", item)
	}
	var doc struct {
		V []string `toml:"v"`
	}
	if err := toml.Unmarshal([]byte("v = "+value), &doc); err != nil {
		return "", false, fmt.Errorf("parse disabled_plugins: %w", err)
	}
	if !slices.Contains(doc.V, item) {
		return line, false, nil
	}
	kept := slices.DeleteFunc(doc.V, func(s string) bool { return s == item })
	quoted := make([]string, len(kept))
	for i, s := range kept {
		quoted[i] = strconv.Quote(s)
	}
	indent := key[:len(key)-len(strings.TrimLeft(key, " \t"))]
	return indent + strings.TrimSpace(key) + " = [" + strings.Join(quoted, ", ") + "]", true, nil
}

func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func joinLines(lines []string) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
