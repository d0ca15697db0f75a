package engine_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// policy validate refuses a policy that can never fit the maps it would be
// enforced with, and only warns when the union of several could not.
func TestValidateRefusesWhatCanNeverFit(t *testing.T) {
	holdfast := harness.Build(t, "./engine/cmd/holdfast")
	dir := t.TempDir()
	write := func(name string, cidrs ...string) string {
		var deny []string
		for _, c := range cidrs {
			deny = append(deny, fmt.Sprintf("{cidr: %s}", c))
		}
		path := filepath.Join(dir, name+".yaml")
		doc := fmt.Sprintf("apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\nmetadata: {name: %s}\nspec:\n  network:\n    connect:\n      deny: [%s]\n", name, strings.Join(deny, ", "))
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	small := write("small", "10.0.0.0/8", "192.0.2.0/24")
	other := write("other", "198.51.100.0/24")
	big := write("big", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")

	run := func(args ...string) (string, error) {
		out, err := exec.Command(holdfast, append([]string{"policy", "validate"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("--max-net-prefixes", "2", small); err != nil {
		t.Errorf("two prefixes in maps of two: %v\n%s", err, out)
	}
	out, err := run("--max-net-prefixes", "2", small, big)
	if err == nil || !strings.Contains(out, "policy big can never be enforced") || !strings.Contains(out, "net_prefixes") {
		t.Errorf("three prefixes in maps of two: want a refusal naming the policy and the map, got %v\n%s", err, out)
	}
	out, err = run("--max-net-prefixes", "2", small, other)
	if err != nil || !strings.Contains(out, "warning: a container selected by all these policies could not be enforced") {
		t.Errorf("a union of three prefixes in maps of two: want a warning only, got %v\n%s", err, out)
	}
}
