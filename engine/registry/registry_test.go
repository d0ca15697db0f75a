package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

func TestPersistAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	weird := "pod/../../etc/passwd ä"
	for _, c := range []api.Container{
		{ID: "abc123", CgroupID: 1, Namespace: "shop", Labels: map[string]string{"app": "web"}},
		{ID: weird, CgroupID: 2},
	} {
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	id1, created, err := s.RulesetID("a@1")
	if err != nil || !created || id1 != 1 {
		t.Fatalf("first ruleset: id %d created %v err %v", id1, created, err)
	}
	id2, _, _ := s.RulesetID("b@1")
	again, created, _ := s.RulesetID("a@1")
	if again != id1 || created || id2 == id1 {
		t.Fatalf("ruleset ids not stable: %d %d %d", id1, id2, again)
	}
	if err := s.ForgetRuleset("a@1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("abc123"); err != nil {
		t.Fatal(err)
	}
	// Files stay inside the registry dir whatever the ID.
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if !strings.HasPrefix(p, dir) {
			t.Errorf("file outside registry: %s", p)
		}
		return nil
	})
	// A torn temp file from a crash mid-write is ignored.
	os.WriteFile(filepath.Join(dir, "containers", ".x.json.tmp123"), []byte("{"), 0o600)

	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 1 {
		t.Fatalf("reopened registry has %d entries, want 1: %v", r.Len(), r.List())
	}
	if c, ok := r.Get(weird); !ok || c.CgroupID != 2 {
		t.Fatalf("weird id lost: %+v %v", c, ok)
	}
	keys := r.RulesetKeys()
	if len(keys) != 1 || keys["b@1"] != id2 {
		t.Fatalf("rulesets after reopen: %v", keys)
	}
	// IDs are never reused, even after a ruleset is forgotten.
	next, _, _ := r.RulesetID("a@1")
	if next <= id2 {
		t.Fatalf("ruleset id %d reused (previous max %d)", next, id2)
	}
}

func TestCorruptEntryReported(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	s.Put(api.Container{ID: "good", CgroupID: 1})
	os.WriteFile(filepath.Join(dir, "containers", "bad.json"), []byte("{nope"), 0o600)
	r, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Fatalf("corrupt entry not reported by name: %v", err)
	}
	if _, ok := r.Get("good"); !ok {
		t.Fatal("good entry lost next to a corrupt one")
	}
}
