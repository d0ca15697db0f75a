package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// MaxFileSize bounds one policy file, so a stray large file cannot make the
// engine spend unbounded memory while it keeps enforcing its old set.
const MaxFileSize = 1 << 20

// MaxErrors bounds the problems reported for one file; past it, a file is
// more likely not a policy file at all than a policy with many mistakes.
const MaxErrors = 100

// A FieldError is one problem in a policy file: which file, which document
// when the file holds several, which field, and what is wrong with it.
type FieldError struct {
	File     string
	Document int    // 1-based; 0 when the file holds a single document
	Field    string // e.g. "spec.exec.deny[2]"; empty for the whole document
	Err      error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Document > 0 {
		fmt.Fprintf(&b, ": document %d", e.Document)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// ParseFile reads and parses one policy file. It refuses anything but a
// regular file, so a FIFO or device in a policy directory cannot block it.
func ParseFile(path string) ([]*Policy, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// readFile reads a regular file of at most MaxFileSize bytes; a larger one
// is a FieldError, as Parse reports it.
func readFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read policy file %s: not a regular file (%s)", path, info.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	defer f.Close()
	data, err := linux.ReadLimited(f, MaxFileSize, "file")
	if errors.Is(err, linux.ErrTooLarge) {
		return nil, &FieldError{File: path, Err: err}
	} else if err != nil {
		return nil, fmt.Errorf("read policy file %s: %w", path, err)
	}
	return data, nil
}

// Parse parses the policies in data, which may hold several YAML documents
// separated by "---". name is used in errors and as each policy's File.
// Every problem of the file is reported, joined; on any problem no policy
// is returned.
func Parse(name string, data []byte) ([]*Policy, error) {
	if len(data) > MaxFileSize {
		return nil, &FieldError{File: name, Err: fmt.Errorf("file is larger than %d bytes", MaxFileSize)}
	}
	docs := splitDocuments(data)
	var errs []error
	var policies []*Policy
	seen := make(map[string]*Policy)
	for i, d := range docs {
		if len(errs) > MaxErrors {
			break
		}
		loc := location{file: name, document: i + 1, documents: len(docs)}
		j, err := yaml.YAMLToJSONStrict(d.data)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
			errs = append(errs, loc.errorf("", "%s", shiftLines(msg, d.line-1)))
			continue
		}
		if string(bytes.TrimSpace(j)) == "null" {
			continue // "~" or "null": nothing to enforce
		}
		if documentKind(j) == KindRedactionFilter {
			continue // engine/redact reads these
		}
		p, derrs := parseDocument(loc, j)
		errs = append(errs, derrs...)
		if p == nil {
			continue
		}
		if prev, dup := seen[p.Name]; dup {
			errs = append(errs, loc.errorf("metadata.name", "policy %q is already defined in document %d", p.Name, prev.Document))
			continue
		}
		seen[p.Name] = p
		policies = append(policies, p)
	}
	if len(errs) > MaxErrors {
		errs = append(errs[:MaxErrors], &FieldError{File: name, Err: fmt.Errorf("too many errors; stopped after %d", MaxErrors)})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return policies, nil
}

// location is where a document sits, for error messages.
type location struct {
	file      string
	document  int // 1-based
	documents int // in the file
}

func (l location) errorf(field, format string, args ...any) *FieldError {
	e := &FieldError{File: l.file, Field: field, Err: fmt.Errorf(format, args...)}
	if l.documents > 1 {
		e.Document = l.document
	}
	return e
}

// chunk is one document's text and the file line it starts on (1-based).
type chunk struct {
	data []byte
	line int
}

// splitDocuments cuts a YAML stream at its "---" and "..." marker lines,
// leaving out documents with nothing but comments and blank lines.
func splitDocuments(data []byte) []chunk {
	var chunks []chunk
	var cur []byte
	start := 0 // line index where cur begins
	flush := func(next int) {
		if hasContent(cur) {
			chunks = append(chunks, chunk{data: cur, line: start + 1})
		}
		cur, start = nil, next
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case isMarker(trimmed, "---"):
			flush(i)
			rest := bytes.TrimSpace(trimmed[3:])
			if len(rest) == 0 || rest[0] == '#' {
				start = i + 1
				continue
			}
			// "--- value": the marker line begins the next document.
		case isMarker(trimmed, "..."):
			flush(i + 1)
			continue
		}
		cur = append(cur, line...)
	}
	flush(len(lines))
	return chunks
}

// hasContent reports whether a document has a line that is neither blank
// nor a comment.
func hasContent(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return true
		}
	}
	return false
}

// yamlLine finds the line numbers in YAML parser errors: "yaml: line N: ..."
// and, after "yaml: unmarshal errors:", one "  line N: ..." per problem.
var yamlLine = regexp.MustCompile(`(?m)^(yaml: line |  line )(\d+):`)

// shiftLines turns line numbers within a document into line numbers within
// its file.
func shiftLines(msg string, offset int) string {
	if offset == 0 {
		return msg
	}
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		sub := yamlLine.FindStringSubmatch(m)
		n, err := strconv.Atoi(sub[2])
		if err != nil {
			return m
		}
		return sub[1] + strconv.Itoa(n+offset) + ":"
	})
}

// isMarker reports whether line is the document marker m, alone or
// followed by white space.
func isMarker(line []byte, m string) bool {
	if !bytes.HasPrefix(line, []byte(m)) {
		return false
	}
	return len(line) == len(m) || line[len(m)] == ' ' || line[len(m)] == '\t'
}

// parseDocument decodes and validates one document. It returns the policy
// when the document is valid, and every problem it found otherwise.
func parseDocument(loc location, data []byte) (*Policy, []error) {
	c := &checker{loc: loc}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		c.addf("", "decode document: %w", err)
		return nil, c.errs
	}
	if _, ok := tree.(map[string]any); !ok {
		c.addf("", "a policy document must be a mapping, got %s", describe(tree))
		return nil, c.errs
	}
	tree, _ = c.shape(tree, reflect.TypeFor[document](), "")

	// What is left has the right shape; decode it strictly all the same.
	pruned, err := json.Marshal(tree)
	if err != nil {
		c.addf("", "re-encode document: %w", err)
		return nil, c.errs
	}
	var doc document
	strict := json.NewDecoder(bytes.NewReader(pruned))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&doc); err != nil {
		c.addf("", "decode document: %w", err)
		return nil, c.errs
	}
	p := c.policy(&doc)
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return p, nil
}

// checker collects the problems of one document.
type checker struct {
	loc  location
	errs []error
	// bad holds fields already reported as malformed and dropped; checks of
	// those fields and of anything below them stay quiet.
	bad []string
}

func (c *checker) addf(field, format string, args ...any) {
	if c.reported(field) {
		return
	}
	c.errs = append(c.errs, c.loc.errorf(field, format, args...))
}

func (c *checker) reported(field string) bool {
	for _, b := range c.bad {
		if field == b || strings.HasPrefix(field, b) && (field[len(b)] == '.' || field[len(b)] == '[') {
			return true
		}
	}
	return false
}

// malformed reports a value of the wrong type and drops it.
func (c *checker) malformed(field, format string, args ...any) {
	c.addf(field, format, args...)
	c.bad = append(c.bad, field)
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// shape checks a generic JSON value against the Go type it will be decoded
// into, reporting unknown fields and values of the wrong type with their
// full field path (encoding/json names neither the path nor the index).
// Bad values are dropped (sequence items set to null, so indexes stay
// right) and the rest can still be validated. keep is false when v itself
// is bad.
func (c *checker) shape(v any, t reflect.Type, field string) (out any, keep bool) {
	if v == nil {
		return nil, true
	}
	if t == reflect.TypeFor[ExecDeny]() {
		switch v.(type) {
		case string:
			return v, true
		case map[string]any:
			return c.shape(v, reflect.TypeFor[execDenyFields](), field)
		}
		c.malformed(field, "must be a path or a mapping {path, from}, got %s", describe(v))
		return nil, false
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		switch v.(type) {
		case string, json.Number:
			return v, true
		}
		c.malformed(field, "must be a string or a number, got %s", describe(v))
		return nil, false
	}
	switch t.Kind() {
	case reflect.Pointer:
		return c.shape(v, t.Elem(), field)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.malformed(field, "must be a mapping, got %s", describe(v))
			return nil, false
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f, known := fields[k]
			if !known {
				c.addf(field, "unknown field %q%s", k, suggest(k, fields))
				delete(m, k)
				continue
			}
			if nv, ok := c.shape(m[k], f, join(field, k)); ok {
				m[k] = nv
			} else {
				delete(m, k)
			}
		}
		return m, true
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			c.malformed(field, "must be a mapping, got %s", describe(v))
			return nil, false
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if nv, ok := c.shape(m[k], t.Elem(), fmt.Sprintf("%s[%s]", field, k)); ok {
				m[k] = nv
			} else {
				delete(m, k)
			}
		}
		return m, true
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			c.malformed(field, "must be a sequence, got %s", describe(v))
			return nil, false
		}
		for i := range s {
			if nv, ok := c.shape(s[i], t.Elem(), fmt.Sprintf("%s[%d]", field, i)); ok {
				s[i] = nv
			} else {
				s[i] = nil
			}
		}
		return s, true
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.malformed(field, "must be true or false, got %s", describe(v))
			return nil, false
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			hint := ""
			if _, isBool := v.(bool); isBool {
				hint = " (YAML reads yes/no/on/off/true/false as booleans; quote the value)"
			}
			c.malformed(field, "must be a string, got %s%s", describe(v), hint)
			return nil, false
		}
	}
	return v, true
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// suggest names the known field an unknown key differs from only in case,
// because encoding/json would otherwise have taken it silently.
func suggest(key string, fields map[string]reflect.Type) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
	}
	return ""
}

func join(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

// describe names a generic YAML value's type the way a YAML author sees it.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", v)
	case json.Number:
		return "number " + v.String()
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case []any:
		return "a sequence"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}
