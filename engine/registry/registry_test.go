package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
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

// TestSharedFields checks that registrations share what they repeat
// without one's change reaching another: a replay gives containers with
// equal labels one map, and Put keeps no map of its caller's.
func TestSharedFields(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	web := map[string]string{"app": "web", "tier": "front"}
	for _, c := range []api.Container{
		{ID: "a", CgroupID: 1, Namespace: "shop", Labels: web, Policies: []string{"locked"}, Entrypoint: []string{"/bin/sh", "-c"}},
		{ID: "b", CgroupID: 2, Namespace: "shop", Labels: maps.Clone(web), Policies: []string{"locked"}},
		{ID: "c", CgroupID: 3, Namespace: "shop", Labels: map[string]string{"app": "web"}},
	} {
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
	}
	web["app"] = "changed by the caller"
	if a, _ := s.Get("a"); a.Labels["app"] != "web" {
		t.Fatalf("Put kept the caller's labels map: %v", a.Labels)
	}
	s.Close()

	r := open(t, dir)
	a, _ := r.Get("a")
	b, _ := r.Get("b")
	c, _ := r.Get("c")
	if !maps.Equal(a.Labels, map[string]string{"app": "web", "tier": "front"}) || !maps.Equal(c.Labels, map[string]string{"app": "web"}) {
		t.Fatalf("labels after replay: a %v, c %v", a.Labels, c.Labels)
	}
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() {
		t.Error("equal labels of a replay are two maps")
	}
	if reflect.ValueOf(a.Labels).UnsafePointer() == reflect.ValueOf(c.Labels).UnsafePointer() {
		t.Fatal("different labels share a map")
	}
	if &a.Policies[0] != &b.Policies[0] || a.Policies[0] != "locked" {
		t.Errorf("equal policy lists of a replay: %p %p %v", a.Policies, b.Policies, a.Policies)
	}
	if !slices.Equal(a.Entrypoint, []string{"/bin/sh", "-c"}) || a.Namespace != "shop" || c.Namespace != "shop" {
		t.Fatalf("fields after replay: %+v %+v", a, c)
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
	var retained uint64
	for range b.N {
		b.StopTimer()
		before := heapInUse()
		b.StartTimer()
		s, err := Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != 10000 {
			b.Fatalf("replayed %d registrations, want 10000", s.Len())
		}
		b.StopTimer()
		retained = heapInUse() - before
		s.Close()
		b.StartTimer()
	}
	// The engine holds the registry for its lifetime: what it keeps after
	// a GC is most of the engine's resident memory at scale.
	b.ReportMetric(float64(retained)/(1<<20), "MB-retained")
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestEntryLineIsMarshal: every kind of journal line is what
// encoding/json writes, by hand or not.
func TestEntryLineIsMarshal(t *testing.T) {
	c := &api.Container{ID: "c\"1<", CgroupID: 5, CgroupPath: "/sys/fs/cgroup/x", Labels: map[string]string{"app": "web"}, Policies: []string{"p"}, Pid: 9}
	for _, e := range []entry{
		{Op: "put", Container: c},
		{Op: "delete", ID: "c\"1<"},
		{Op: "boot", BootID: "b"},
		{Op: "ruleset", Key: "k", Ruleset: 3},
		{Op: "forget-ruleset", Key: "k"},
		{Op: "next-ruleset", Ruleset: 7},
		{Op: "put", Container: c, ID: "odd"},
		{Op: "delete"},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.appendLine(nil)
		if err != nil || string(got) != string(want)+"\n" {
			t.Errorf("%+v: appendLine = %s (%v), json.Marshal %s", e, got, err, want)
		}
	}
}
