package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// KindRedactionFilter documents live in the policy files beside
// WorkloadPolicy documents; Parse skips them and engine/redact reads them.
const KindRedactionFilter = "RedactionFilter"

// Document is one YAML document of a policy file, converted to JSON, that
// another package validates; its errors point into the file like a
// policy's do.
type Document struct {
	JSON []byte
	loc  location
}

// File is the file the document is in.
func (d Document) File() string { return d.loc.file }

// Errorf reports a problem with field of the document.
func (d Document) Errorf(field, format string, args ...any) *FieldError {
	return d.loc.errorf(field, format, args...)
}

// Files lists the policy files of dir in name order: *.yaml and *.yml,
// hidden files skipped (editors and Kubernetes ConfigMap volumes put their
// own there).
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list policy files: %w", err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || ext != ".yaml" && ext != ".yml" {
			continue
		}
		out = append(out, filepath.Join(dir, name))
	}
	return out, nil
}

// FileDocuments returns the documents of one kind in a policy file.
// Documents that are not YAML are left out: Parse reports them.
func FileDocuments(path, kind string) ([]Document, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	chunks := splitDocuments(data)
	var out []Document
	for i, c := range chunks {
		j, err := yaml.YAMLToJSONStrict(c.data)
		if err != nil || documentKind(j) != kind {
			continue
		}
		out = append(out, Document{JSON: j, loc: location{file: path, document: i + 1, documents: len(chunks)}})
	}
	return out, nil
}

// documentKind is the kind a JSON document declares, or "".
func documentKind(j []byte) string {
	var head struct {
		Kind any `json:"kind"`
	}
	if err := json.NewDecoder(bytes.NewReader(j)).Decode(&head); err != nil {
		return ""
	}
	k, _ := head.Kind.(string)
	return k
}
