package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/policy"
)

// A refused directory is reported file by file, wrapped or not.
func TestPolicyFileErrors(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"good.yaml":    "apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\nmetadata: {name: good}\nspec:\n  exec: {deny: [/usr/bin/id]}\n",
		"badcidr.yaml": "apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\nmetadata: {name: cidr}\nspec:\n  network: {connect: {deny: [{cidr: 10.0.0.300/8}]}}\n",
		"unknown.yaml": "apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\nmetadata: {name: unknown}\nspec:\n  exec: {deny: [/bin/sh]}\n  bogus: 1\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := policy.LoadDir(dir)
	if err == nil {
		t.Fatal("LoadDir accepted a directory with two bad files")
	}
	for _, e := range []error{err, fmt.Errorf("reload policies from %s: %w", dir, err)} {
		got := policyFileErrors(e)
		if len(got) != 2 || got[0].File != filepath.Join(dir, "badcidr.yaml") || got[1].File != filepath.Join(dir, "unknown.yaml") {
			t.Fatalf("want errors of badcidr.yaml and unknown.yaml, got %+v", got)
		}
		if !strings.Contains(strings.Join(got[0].Errors, " "), "cidr") || !strings.Contains(strings.Join(got[1].Errors, " "), "bogus") {
			t.Errorf("errors do not name the problems: %+v", got)
		}
	}
	if got := policyFileErrors(fmt.Errorf("load policies: %w", os.ErrNotExist)); len(got) != 1 || got[0].File != "" {
		t.Errorf("a directory error: want one entry without a file, got %+v", got)
	}
}
