package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// expectIDs checks that s holds a registration for each id of kept and
// none for any of dropped; where says what the store went through.
func expectIDs(t *testing.T, s *Store, where string, kept, dropped []string) {
	t.Helper()
	for _, id := range kept {
		if _, ok := s.Get(id); !ok {
			t.Errorf("registration %s lost %s", id, where)
		}
	}
	for _, id := range dropped {
		if _, ok := s.Get(id); ok {
			t.Errorf("registration %s applied %s, want it dropped", id, where)
		}
	}
}

func TestPersistAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	weird := "pod/../../etc/passwd ä\n{"
	for _, c := range []api.Container{
		{ID: "abc123", CgroupID: 1, Namespace: "shop", Labels: map[string]string{"app": "web"}},
		{ID: weird, CgroupID: 2},
		{ID: "same-cgroup", CgroupID: 2},
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
	if err := s.ForgetRuleset("b@1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("abc123"); err != nil {
		t.Fatal(err)
	}
	if got := s.InCgroup(2); strings.Join(got, ",") != weird+",same-cgroup" {
		t.Fatalf("InCgroup(2) = %q", got)
	}
	s.Close()

	r := open(t, dir)
	if r.Len() != 2 {
		t.Fatalf("reopened registry has %d entries, want 2: %v", r.Len(), r.List())
	}
	if c, ok := r.Get(weird); !ok || c.CgroupID != 2 {
		t.Fatalf("weird id lost: %+v %v", c, ok)
	}
	if _, ok := r.Get("abc123"); ok {
		t.Fatal("deleted registration came back")
	}
	if keys := r.RulesetKeys(); len(keys) != 1 || keys["a@1"] != id1 {
		t.Fatalf("rulesets after reopen: %v", keys)
	}
	// IDs are never reused, even after a ruleset is forgotten and the
	// journal compacted.
	r.Close()
	r = open(t, dir)
	if next, _, _ := r.RulesetID("c@1"); next <= id2 {
		t.Fatalf("ruleset id %d reused (previous max %d)", next, id2)
	}
}

func TestTornAndCorruptLines(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.Put(api.Container{ID: "good", CgroupID: 1})
	s.Close()
	journal := filepath.Join(dir, journalName)
	data, _ := os.ReadFile(journal)
	// A corrupt line in the middle is reported; a last line without its
	// newline (a crash mid-write) is silently dropped.
	data = append(data, []byte("{nope\n"+`{"op":"put","container":{"id":"late","cgroupId":3}}`+"\n"+`{"op":"put","container":{"id":"torn"`)...)
	os.WriteFile(journal, data, 0o600)

	r, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("corrupt line not reported by number: %v", err)
	}
	defer r.Close()
	expectIDs(t, r, "next to a corrupt line", []string{"good", "late"}, []string{"torn"})
}

func TestRebootDropsRegistrations(t *testing.T) {
	dir := t.TempDir()
	journal := `{"op":"boot","bootId":"an-earlier-boot"}
{"op":"ruleset","key":"a@1","ruleset":1}
{"op":"put","container":{"id":"old","cgroupId":7}}
`
	os.WriteFile(filepath.Join(dir, journalName), []byte(journal), 0o600)
	s := open(t, dir)
	if s.Len() != 0 || len(s.RulesetKeys()) != 0 {
		t.Fatalf("registrations from another boot were trusted: %v %v", s.List(), s.RulesetKeys())
	}
}

func BenchmarkPutDelete(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := api.Container{ID: "bench", CgroupID: 5, Namespace: "shop", Labels: map[string]string{"app": "web"}}
	for i := 0; i < b.N; i++ {
		if err := s.Put(c); err != nil {
			b.Fatal(err)
		}
		if err := s.Delete(c.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen10000 measures an engine restart's replay of a compact
// journal of 10,000 registrations (decode and index).
//
//	go test -run '^$' -bench Open10000 ./engine/registry/
func BenchmarkOpen10000(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		pod := fmt.Sprintf("pod-%d", i%100)
		c := api.Container{ID: fmt.Sprintf("ctr-%d", i), CgroupID: uint64(1000 + i), CgroupPath: "/kubepods/" + pod + "/ctr", Namespace: "shop",
			Pod: pod, PodUID: "uid-" + pod, Labels: map[string]string{"app": "web", "tier": "front"}, Name: "main",
			Image: "busybox:latest", Source: "nri", Policies: []string{"locked"}, RootID: "2049:1234"}
		if err := s.Put(c); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for range b.N {
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != 10000 {
			b.Fatalf("replayed %d registrations, want 10000", s.Len())
		}
		s.Close()
	}
}
