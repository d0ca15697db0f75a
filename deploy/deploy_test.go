// Package deploy_test keeps the shipped deployment examples valid: the
// policies parse under the engine's own rules and select the workloads they
// are written for, and the Kubernetes ConfigMap carries the same policies as
// deploy/policies/.
package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/holdfast-dev/holdfast/engine/policy"
)

func loadExamples(t *testing.T) *policy.Set {
	t.Helper()
	set, err := policy.LoadDir("policies")
	if err != nil {
		t.Fatalf("deploy/policies: %v", err)
	}
	return set
}

func TestExamplePoliciesSelectTheirWorkloads(t *testing.T) {
	set := loadExamples(t)
	tests := []struct {
		name   string
		id     policy.Identity
		policy string // "" when nothing may select it
	}{
		{
			// What test/demo.sh registers.
			name:   "demo container",
			id:     policy.Identity{Namespace: "demo", Pod: "demo", Labels: map[string]string{"app": "demo"}, Container: "main"},
			policy: "demo-lockdown",
		},
		{
			name:   "front-end nginx in shop",
			id:     policy.Identity{Namespace: "shop", Pod: "web-1", Labels: map[string]string{"app": "web", "tier": "front"}, Container: "main", Image: "registry.example/library/nginx:1.27"},
			policy: "web-lockdown",
		},
		{
			name: "back-end tier of the same app",
			id:   policy.Identity{Namespace: "shop", Pod: "web-2", Labels: map[string]string{"app": "web", "tier": "back"}, Container: "main", Image: "registry.example/library/nginx:1.27"},
		},
		{
			name: "unlabelled pod",
			id:   policy.Identity{Namespace: "default", Pod: "other", Container: "main"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range set.Select(tt.id) {
				got = append(got, p.Name)
			}
			switch {
			case tt.policy == "" && len(got) != 0:
				t.Errorf("selected by %q, want no policy", got)
			case tt.policy != "" && (len(got) != 1 || got[0] != tt.policy):
				t.Errorf("selected by %q, want exactly %q", got, tt.policy)
			}
		})
	}
}

// The demo's checks depend on these exact rules.
func TestDemoPolicyRules(t *testing.T) {
	set := loadExamples(t)
	p, ok := set.Policy("demo-lockdown")
	if !ok {
		t.Fatal("deploy/policies has no demo-lockdown policy")
	}
	var got []string
	for _, r := range set.Rules(p) {
		got = append(got, r.Kind+" "+r.Text)
	}
	want := []string{"exec /usr/bin/id", "exec /tmp/", "connect 127.0.0.1/32 tcp 9"}
	if len(got) != len(want) {
		t.Fatalf("demo-lockdown rules = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("demo-lockdown rule %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// configMap is the part of a Kubernetes object this test reads.
type configMap struct {
	Kind     string                `json:"kind"`
	Metadata struct{ Name string } `json:"metadata"`
	Data     map[string]string     `json:"data"`
}

func TestDaemonSetConfigMapMatchesExamples(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join("kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var policies map[string]string
	for i, doc := range bytes.Split(manifest, []byte("\n---\n")) {
		var obj configMap
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("daemonset.yaml document %d: %v", i+1, err)
		}
		if obj.Kind == "ConfigMap" && obj.Metadata.Name == "holdfast-policies" {
			policies = obj.Data
		}
	}
	if len(policies) == 0 {
		t.Fatal("daemonset.yaml has no holdfast-policies ConfigMap with data")
	}
	examples := loadExamples(t)
	for file, text := range policies {
		parsed, err := policy.Parse("configmap/"+file, []byte(text))
		if err != nil {
			t.Errorf("ConfigMap entry %s: %v", file, err)
			continue
		}
		for _, p := range parsed {
			example, ok := examples.Policy(p.Name)
			if !ok {
				t.Errorf("ConfigMap policy %s is not in deploy/policies", p.Name)
				continue
			}
			if p.Digest() != example.Digest() {
				t.Errorf("ConfigMap policy %s differs from %s", p.Name, example.File)
			}
		}
	}
}
