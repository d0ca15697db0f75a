package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast-dev/holdfast/bpf"
	"github.com/holdfast-dev/holdfast/bpf/cgroup"
	"github.com/holdfast-dev/holdfast/bpf/linux"
	"github.com/holdfast-dev/holdfast/engine/api"
)

// These tests run the engine without root or a kernel: a fakeEnforcer
// stands for the pinned maps and a plain directory tree for the cgroup v2
// mount, whose cgroup IDs are the directories' inodes as on cgroup2.

// unitEngine is an engine over a fake enforcer, a temp cgroup tree, policy
// dir and state dir.
type unitEngine struct {
	*Engine
	fake       *fakeEnforcer
	opts       Options
	cgroupRoot string // the cgroup "mount"
	policyDir  string
}

// policyText is a WorkloadPolicy selecting namespace ns that denies exec
// of path, in mode ("" for the default, enforce).
func policyText(name, mode, ns, path string) string {
	modeLine := ""
	if mode != "" {
		modeLine = "  mode: " + mode + "\n"
	}
	return fmt.Sprintf("apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\nmetadata: {name: %s}\nspec:\n%s  selector: {namespaces: [%s]}\n  exec: {deny: [%s]}\n", name, modeLine, ns, path)
}

// twoPolicies are policies NS-lockdown selecting namespaces a and b, with
// different rules: their containers get different rulesets.
func twoPolicies(a, b string) map[string]string {
	return map[string]string{
		a + ".yaml": policyText(a+"-lockdown", "", a, "/usr/bin/id"),
		b + ".yaml": policyText(b+"-lockdown", "", b, "/usr/bin/wget"),
	}
}

// newUnitEngine starts an engine on policy files (name → text).
func newUnitEngine(t *testing.T, files map[string]string, opts Options) *unitEngine {
	t.Helper()
	dir := t.TempDir()
	u := &unitEngine{fake: newFakeEnforcer(), cgroupRoot: filepath.Join(dir, "cgroup"), policyDir: filepath.Join(dir, "policies")}
	for _, d := range []string{u.cgroupRoot, u.policyDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range files {
		u.writePolicy(t, name, text)
	}
	opts.PolicyDir, opts.StateDir, opts.BPFDir, opts.CgroupRoot = u.policyDir, filepath.Join(dir, "state"), filepath.Join(dir, "bpf"), u.cgroupRoot
	opts.OpenEnforcer = func(bpf.Layout, bpf.Options) (Enforcer, error) { return u.fake, nil }
	opts.OpenEnforcerMaps = func(bpf.Layout) (Enforcer, error) { return u.fake, nil }
	opts.CgroupID = dirInode
	u.opts = opts
	u.start(t)
	return u
}

// dirInode stands in for cgroup.ID on a plain directory tree.
func dirInode(dir string) (uint64, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("cgroup id of %s: not a directory", dir)
	}
	return linux.Inode(dir)
}

// start (re)starts the engine on the same state and fake maps.
func (u *unitEngine) start(t *testing.T) {
	t.Helper()
	e, err := New(context.Background(), u.opts)
	if err != nil {
		t.Fatalf("start engine: %v", err)
	}
	u.Engine = e
	t.Cleanup(func() { e.Close() })
}

// restart closes the engine and starts a new one, as after a crash or an
// upgrade: the maps stay.
func (u *unitEngine) restart(t *testing.T) {
	t.Helper()
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	u.start(t)
}

func (u *unitEngine) writePolicy(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(u.policyDir, name), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cgroup makes a cgroup directory and returns its path and ID.
func (u *unitEngine) cgroup(t *testing.T, rel string) (string, uint64) {
	t.Helper()
	dir := filepath.Join(u.cgroupRoot, rel)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	id, err := dirInode(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, id
}

func (u *unitEngine) register(t *testing.T, c api.Container) *api.Container {
	t.Helper()
	r, err := u.Register(context.Background(), c)
	if err != nil {
		t.Fatalf("register %s: %v", c.ID, err)
	}
	return r
}

// entry is the ruleset the fake maps point cgroupID at (0: none).
func (u *unitEngine) entry(cgroupID uint64) uint32 {
	cgroups, _ := u.fake.state()
	return cgroups[cgroupID]
}

func (u *unitEngine) registered(t *testing.T) map[string]api.Container {
	t.Helper()
	cs, err := u.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.Container{}
	for _, c := range cs {
		out[c.ID] = c
	}
	return out
}

// Two containers in one cgroup (a pod sharing its sandbox's cgroup, a
// runtime registering twice): the cgroup's entry stays while a
// registration that has policies still uses it.
func TestSharedCgroupEntry(t *testing.T) {
	for _, tc := range []struct {
		name        string
		secondNS    string // namespace of the second container
		wantEntryAt string // after unregistering the first: "kept" or "removed"
	}{
		{"both selected", "shop", "kept"},
		{"second selected by nothing", "other", "removed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{})
			dir, cg := u.cgroup(t, "pod1")
			first := u.register(t, api.Container{ID: "first", CgroupPath: dir, Namespace: "shop"})
			ruleset := u.entry(cg)
			if ruleset == 0 || !slices.Equal(first.Policies, []string{"shop-lockdown"}) {
				t.Fatalf("first container: entry %d, policies %v; want an entry and [shop-lockdown]", ruleset, first.Policies)
			}
			u.register(t, api.Container{ID: "second", CgroupPath: dir, Namespace: tc.secondNS})
			if got := u.entry(cg); got != ruleset {
				t.Fatalf("registering the second container changed the cgroup's entry from ruleset %d to %d", ruleset, got)
			}
			if err := u.Unregister(context.Background(), "first"); err != nil {
				t.Fatal(err)
			}
			got := u.entry(cg)
			switch {
			case tc.wantEntryAt == "kept" && got != ruleset:
				t.Fatalf("unregistering one of two selected containers removed the cgroup's entry (now %d, want %d)", got, ruleset)
			case tc.wantEntryAt == "removed" && got != 0:
				t.Fatalf("the only selected container is gone but cgroup %d still points at ruleset %d", cg, got)
			}
			if err := u.Unregister(context.Background(), "second"); err != nil {
				t.Fatal(err)
			}
			if got := u.entry(cg); got != 0 {
				t.Fatalf("both containers unregistered, cgroup %d still points at ruleset %d", cg, got)
			}
		})
	}
}

// Sync replaces one registrar's registrations: it removes that source's
// stale ones and no other source's.
func TestSyncRemovesOnlyItsSource(t *testing.T) {
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{})
	ctx := context.Background()
	dirs, ids := map[string]string{}, map[string]uint64{}
	for _, name := range []string{"cli1", "nri1", "nri2"} {
		dirs[name], ids[name] = u.cgroup(t, name)
	}
	u.register(t, api.Container{ID: "cli1", CgroupPath: dirs["cli1"], Namespace: "shop", Source: "cli"})
	if _, err := u.Sync(ctx, "nri", []api.Container{
		{ID: "nri1", CgroupPath: dirs["nri1"], Namespace: "shop"},
		{ID: "nri2", CgroupPath: dirs["nri2"], Namespace: "shop"},
	}); err != nil {
		t.Fatal(err)
	}
	for name, cg := range ids {
		if u.entry(cg) == 0 {
			t.Fatalf("%s: no cgroup entry after the first sync", name)
		}
	}
	// nri2 exited while the registrar was down; a synced container whose
	// cgroup is gone is skipped, not an error for the others.
	out, err := u.Sync(ctx, "nri", []api.Container{
		{ID: "nri1", CgroupPath: dirs["nri1"], Namespace: "shop"},
		{ID: "gone", CgroupPath: filepath.Join(u.cgroupRoot, "gone"), Namespace: "shop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].ID != "nri1" || out[0].Source != "nri" {
		t.Fatalf("sync returned %+v, want nri1 from source nri alone", out)
	}
	reg := u.registered(t)
	if _, ok := reg["nri2"]; ok {
		t.Error("nri2, missing from its registrar's sync, is still registered")
	}
	if u.entry(ids["nri2"]) != 0 {
		t.Error("nri2's cgroup entry survived its removal by sync")
	}
	for _, keep := range []string{"cli1", "nri1"} {
		if _, ok := reg[keep]; !ok {
			t.Errorf("%s was removed by a sync of source nri", keep)
		}
		if u.entry(ids[keep]) == 0 {
			t.Errorf("%s lost its cgroup entry in a sync of source nri", keep)
		}
	}
}

// A reload that fails (a bad file, or the kernel refusing the new rules)
// leaves the last good policies in force: no cgroup entry or ruleset
// changes, the error names what was wrong, and new registrations still get
// the old rules.
func TestReloadRollback(t *testing.T) {
	good := policyText("shop-lockdown", "", "shop", "/usr/bin/id")
	for _, tc := range []struct {
		name     string
		file     string // replaces p.yaml
		putErr   error
		wantErr  string
		keepsErr bool // status reports the policy error
	}{
		{"yaml syntax", "apiVersion: [", nil, "p.yaml", true},
		{"unknown field", good + "  bogus: 1\n", nil, "bogus", true},
		{"bad cidr", "apiVersion: holdfast.dev/v1alpha1\nkind: WorkloadPolicy\nmetadata: {name: shop-lockdown}\nspec:\n  network: {connect: {deny: [{cidr: 10.0.0.300/8}]}}\n", nil, "10.0.0.300", true},
		{"kernel refuses the new ruleset", policyText("shop-lockdown", "", "shop", "/usr/bin/wget"), errors.New("map rulesets is full"), "map rulesets is full", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitEngine(t, map[string]string{"p.yaml": good}, Options{})
			dir, cg := u.cgroup(t, "c1")
			u.register(t, api.Container{ID: "c1", CgroupPath: dir, Namespace: "shop"})
			cgroupsBefore, rulesetsBefore := u.fake.state()

			u.writePolicy(t, "p.yaml", tc.file)
			u.fake.putErr = tc.putErr
			err := u.Reload(context.Background())
			u.fake.putErr = nil
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("reload: got error %v, want one naming %q", err, tc.wantErr)
			}
			cgroupsAfter, rulesetsAfter := u.fake.state()
			if !maps.Equal(cgroupsBefore, cgroupsAfter) || !slices.Equal(rulesetsBefore, rulesetsAfter) {
				t.Fatalf("a failed reload changed the maps: cgroups %v → %v, rulesets %v → %v", cgroupsBefore, cgroupsAfter, rulesetsBefore, rulesetsAfter)
			}
			st, err := u.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tc.keepsErr && st.PolicyError == "" {
				t.Error("status does not report the refused policy")
			}
			if len(st.Policies) != 1 || st.Policies[0].Name != "shop-lockdown" {
				t.Errorf("policies in force after a failed reload: %+v", st.Policies)
			}
			// The old set still decides new registrations: same ruleset.
			dir2, cg2 := u.cgroup(t, "c2")
			u.register(t, api.Container{ID: "c2", CgroupPath: dir2, Namespace: "shop"})
			if got, want := u.entry(cg2), u.entry(cg); got != want {
				t.Fatalf("a container registered after the failed reload got ruleset %d, want the last good one %d", got, want)
			}
		})
	}
}

// Rulesets nothing uses any more are removed on the next reload or start;
// the ones in use stay.
func TestRulesetGarbageCollection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		collect func(*testing.T, *unitEngine)
	}{
		{"reload", func(t *testing.T, u *unitEngine) {
			if err := u.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"restart", func(t *testing.T, u *unitEngine) { u.restart(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitEngine(t, twoPolicies("a", "b"), Options{})
			dirA, cgA := u.cgroup(t, "ca")
			dirB, cgB := u.cgroup(t, "cb")
			u.register(t, api.Container{ID: "ca", CgroupPath: dirA, Namespace: "a"})
			u.register(t, api.Container{ID: "cb", CgroupPath: dirB, Namespace: "b"})
			rsA, rsB := u.entry(cgA), u.entry(cgB)
			if rsA == 0 || rsB == 0 || rsA == rsB {
				t.Fatalf("want two distinct rulesets, got %d and %d", rsA, rsB)
			}
			if err := u.Unregister(context.Background(), "cb"); err != nil {
				t.Fatal(err)
			}
			// Kept for the next container of the same kind until then.
			if _, ok := u.fake.ruleset(rsB); !ok {
				t.Fatalf("ruleset %d went with its last container; it should wait for a reload or start", rsB)
			}
			tc.collect(t, u)
			if _, ok := u.fake.ruleset(rsB); ok {
				t.Errorf("unused ruleset %d survived the %s", rsB, tc.name)
			}
			if _, ok := u.fake.ruleset(rsA); !ok || u.entry(cgA) != rsA {
				t.Errorf("ruleset %d of a registered container was dropped or its entry moved (entry %d)", rsA, u.entry(cgA))
			}
			if st, err := u.Status(context.Background()); err != nil || st.Rulesets != 1 {
				t.Errorf("status counts %v rulesets (err %v), want 1", st.Rulesets, err)
			}
		})
	}
}

// A changed policy set gives containers new rulesets (rule IDs are
// numbered across the set); the old ones go once nothing uses them.
func TestReloadReplacesRulesets(t *testing.T) {
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{})
	dir, cg := u.cgroup(t, "c1")
	u.register(t, api.Container{ID: "c1", CgroupPath: dir, Namespace: "shop"})
	old := u.entry(cg)
	u.writePolicy(t, "p.yaml", policyText("shop-lockdown", "", "shop", "/usr/bin/wget"))
	if err := u.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := u.entry(cg)
	if now == 0 || now == old {
		t.Fatalf("after a rule change the cgroup points at ruleset %d (before %d), want a new one", now, old)
	}
	if _, rulesets := u.fake.state(); !slices.Equal(rulesets, []uint32{now}) {
		t.Fatalf("rulesets in the maps: %v, want only %d", rulesets, now)
	}
	rs, _ := u.fake.ruleset(now)
	if len(rs.Exec) != 1 || !slices.Equal(rs.Exec[0].Components, splitPath(t, "/usr/bin/wget")) {
		t.Fatalf("new ruleset's exec rules: %+v, want /usr/bin/wget", rs.Exec)
	}
}

// splitPath is an exec rule's path as the ruleset holds it.
func splitPath(t *testing.T, path string) []string {
	t.Helper()
	components, _, err := bpf.SplitPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return components
}

// Containers that exist but no registrar reported are adopted under the
// discover source; a registrar's own registration wins over it, and the
// discover source removes only its own registrations.
func TestAdoptDiscovered(t *testing.T) {
	var found []api.Container
	var discoverErr error
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{
		DiscoverSource: "cri",
		Discover: func(ctx context.Context, m cgroup.Mount, known func(string) bool) ([]api.Container, error) {
			return slices.Clone(found), discoverErr
		},
	})
	ctx := context.Background()
	dirOld, cgOld := u.cgroup(t, "old")
	dirNRI, cgNRI := u.cgroup(t, "nri")
	u.register(t, api.Container{ID: "by-nri", CgroupPath: dirNRI, Namespace: "shop", Source: "nri"})

	// Discovery lists by-nri with another identity: the registrar's stays.
	found = []api.Container{
		{ID: "old", CgroupPath: dirOld, Namespace: "shop"},
		{ID: "by-nri", CgroupPath: dirNRI, Namespace: "elsewhere"},
	}
	if err := u.adoptDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	reg := u.registered(t)
	if c, ok := reg["old"]; !ok || c.Source != "cri" || u.entry(cgOld) == 0 {
		t.Fatalf("discovered container: registered %v as %+v, entry %d; want it adopted under cri and enforced", ok, c, u.entry(cgOld))
	}
	if c := reg["by-nri"]; c.Source != "nri" || c.Namespace != "shop" || u.entry(cgNRI) == 0 {
		t.Fatalf("the registrar's registration was overridden by discovery: %+v", c)
	}
	st, err := u.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.CRI == nil || st.CRI.Registered != 1 || st.CRI.LastErr != "" {
		t.Fatalf("status of discovery: %+v, want 1 registered and no error", st.CRI)
	}

	// A registrar reports "old" now: its registration takes over, and
	// discovery no longer finding it does not remove it.
	u.register(t, api.Container{ID: "old", CgroupPath: dirOld, Namespace: "shop", Source: "nri"})
	dirGone, cgGone := u.cgroup(t, "cri-only")
	found = []api.Container{{ID: "cri-only", CgroupPath: dirGone, Namespace: "shop"}}
	if err := u.adoptDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	found = nil
	if err := u.adoptDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	reg = u.registered(t)
	if _, ok := reg["cri-only"]; ok || u.entry(cgGone) != 0 {
		t.Errorf("a container discovery adopted and no longer finds is still registered (%v) or enforced (entry %d)", ok, u.entry(cgGone))
	}
	for _, id := range []string{"old", "by-nri"} {
		if c, ok := reg[id]; !ok || c.Source != "nri" {
			t.Errorf("%s, registered by nri, was removed or taken over by discovery: %+v", id, c)
		}
	}

	// A failed listing (runtime down) removes nothing and says why.
	dirAdopted, cgAdopted := u.cgroup(t, "adopted")
	found = []api.Container{{ID: "adopted", CgroupPath: dirAdopted, Namespace: "shop"}}
	if err := u.adoptDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	found, discoverErr = nil, errors.New("connection refused")
	if err := u.adoptDiscovered(ctx); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("a failed listing: got %v, want its error", err)
	}
	if _, ok := u.registered(t)["adopted"]; !ok || u.entry(cgAdopted) == 0 {
		t.Fatal("a failed listing removed a container discovery had adopted")
	}
	if st, err := u.Status(ctx); err != nil || st.CRI == nil || !strings.Contains(st.CRI.LastErr, "connection refused") {
		t.Fatalf("status after a failed listing: %+v (err %v), want the error in lastError", st.CRI, err)
	}
}

// A container selected by an enforcing and an auditing policy gets both
// policies' rules, each in its own policy's mode, and a reload switching a
// mode reaches its ruleset.
func TestEnforceAndAuditPolicies(t *testing.T) {
	u := newUnitEngine(t, map[string]string{
		"enforce.yaml": policyText("no-id", "enforce", "shop", "/usr/bin/id"),
		"audit.yaml":   policyText("try-no-wget", "audit", "shop", "/usr/bin/wget"),
	}, Options{})
	dir, cg := u.cgroup(t, "c1")
	c := u.register(t, api.Container{ID: "c1", CgroupPath: dir, Namespace: "shop"})
	if want := []string{"no-id", "try-no-wget"}; !slices.Equal(slices.Sorted(slices.Values(c.Policies)), want) {
		t.Fatalf("policies of the container: %v, want %v", c.Policies, want)
	}
	checkModes := func(want map[string]bool) {
		t.Helper()
		rs, ok := u.fake.ruleset(u.entry(cg))
		if !ok {
			t.Fatalf("cgroup %d has no ruleset", cg)
		}
		got := map[string]bool{}
		for _, r := range rs.Exec {
			got[strings.Join(r.Components, "/")] = r.Audit
		}
		wantByPath := map[string]bool{}
		for path, audit := range want {
			wantByPath[strings.Join(splitPath(t, path), "/")] = audit
		}
		if !maps.Equal(got, wantByPath) {
			t.Fatalf("exec rules (path → audit): %v, want %v", got, wantByPath)
		}
	}
	checkModes(map[string]bool{"/usr/bin/id": false, "/usr/bin/wget": true})
	ex, err := u.Explain(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"no-id": api.ModeEnforce, "try-no-wget": api.ModeAudit}; !maps.Equal(ex.PolicyModes, want) {
		t.Fatalf("explain's policy modes: %v, want %v", ex.PolicyModes, want)
	}

	u.writePolicy(t, "audit.yaml", policyText("try-no-wget", "enforce", "shop", "/usr/bin/wget"))
	if err := u.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkModes(map[string]bool{"/usr/bin/id": false, "/usr/bin/wget": false})
}

// The engine refuses its own cgroup and its ancestors, the root included,
// by path or by ID: rules there would hold the engine and the whole node.
func TestRefusesEngineCgroup(t *testing.T) {
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("all", "", "shop", "/usr/bin/id")}, Options{})
	own, err := u.Engine.cgroups.PathOfPID(os.Getpid())
	if err != nil {
		t.Skipf("this process's cgroup v2 path is unknown (%v): nothing to refuse", err)
	}
	// The engine learnt its cgroups at start: restart it over a tree that
	// holds its own path.
	ownDir, ownID := u.cgroup(t, own)
	u.restart(t)
	rootID, err := dirInode(u.cgroupRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    api.Container
	}{
		{"root by path", api.Container{CgroupPath: u.cgroupRoot}},
		{"root by id", api.Container{CgroupID: rootID}},
		{"own cgroup by path", api.Container{CgroupPath: ownDir}},
		{"own cgroup by id", api.Container{CgroupID: ownID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.ID, tc.c.Namespace = "intruder", "shop"
			_, err := u.Register(context.Background(), tc.c)
			// The root by path is refused before its ID is known, as no
			// container's cgroup.
			if err == nil || !strings.Contains(err.Error(), "holds the engine itself") && !strings.Contains(err.Error(), "root cgroup is not a container's") {
				t.Fatalf("register: got %v, want a refusal naming the engine's cgroup or the root", err)
			}
			if cgroups, _ := u.fake.state(); len(cgroups) != 0 {
				t.Fatalf("a refused registration left cgroup entries %v", cgroups)
			}
			if _, ok := u.registered(t)["intruder"]; ok {
				t.Fatal("a refused registration was recorded")
			}
		})
	}
}

// A registrar that cannot reach the engine registers offline: the entry is
// written at once under the engine's last good policies, the next engine
// adopts the registration, and an unregistration offline removes both. It
// waits for, and then gives up on, an engine holding the state.
func TestRegisterOffline(t *testing.T) {
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{})
	dir, cg := u.cgroup(t, "offline")
	c := api.Container{ID: "offline", CgroupPath: dir, Namespace: "shop", Source: "oci-hook"}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := RegisterOffline(ctx, u.opts, c); err == nil || !errors.Is(err, linux.ErrLocked) {
		t.Fatalf("register offline beside a running engine: got %v, want the state-dir lock refused", err)
	}
	if u.entry(cg) != 0 {
		t.Fatal("a refused offline registration wrote a cgroup entry")
	}

	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	// A policy edit the engine never accepted does not apply offline.
	u.writePolicy(t, "p.yaml", policyText("shop-lockdown", "", "shop", "/usr/bin/wget"))
	r, err := RegisterOffline(context.Background(), u.opts, c)
	if err != nil {
		t.Fatal(err)
	}
	rs, ok := u.fake.ruleset(u.entry(cg))
	if !ok || len(rs.Exec) != 1 || !slices.Equal(rs.Exec[0].Components, splitPath(t, "/usr/bin/id")) || !slices.Equal(r.Policies, []string{"shop-lockdown"}) {
		t.Fatalf("offline registration: policies %v, ruleset %+v; want the snapshot's /usr/bin/id rule", r.Policies, rs)
	}

	u.start(t)
	if got, ok := u.registered(t)["offline"]; !ok || got.Source != "oci-hook" {
		t.Fatalf("the engine did not adopt the offline registration: %+v", got)
	}
	if u.entry(cg) == 0 {
		t.Fatal("the starting engine dropped the offline registration's entry")
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := UnregisterOffline(context.Background(), u.opts, "offline"); err != nil {
		t.Fatal(err)
	}
	if u.entry(cg) != 0 {
		t.Fatal("unregistering offline left the cgroup entry")
	}
	if err := UnregisterOffline(context.Background(), u.opts, "offline"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unregistering an unknown container offline: got %v, want api.ErrNotFound", err)
	}
	u.start(t)
}

// At start the engine reconciles the maps with its registry: a registration
// whose cgroup vanished is dropped with its entry; an entry no registration
// accounts for (a lost state dir) stays enforced while its cgroup exists,
// reported as an orphan, and goes when the cgroup does.
func TestReconcileOnStart(t *testing.T) {
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{})
	dirGone, cgGone := u.cgroup(t, "gone")
	dirKept, cgKept := u.cgroup(t, "kept")
	u.register(t, api.Container{ID: "gone", CgroupPath: dirGone, Namespace: "shop"})
	u.register(t, api.Container{ID: "kept", CgroupPath: dirKept, Namespace: "shop"})
	rs := u.entry(cgKept)

	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dirGone); err != nil {
		t.Fatal(err)
	}
	u.start(t)
	if _, ok := u.registered(t)["gone"]; ok || u.entry(cgGone) != 0 {
		t.Fatalf("a registration whose cgroup vanished survived the start (entry %d)", u.entry(cgGone))
	}
	if u.entry(cgKept) != rs {
		t.Fatalf("a live registration's entry changed at start: %d, want %d", u.entry(cgKept), rs)
	}

	// The registry is lost; the maps still hold "kept"'s entry.
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(u.opts.StateDir, "registry")); err != nil {
		t.Fatal(err)
	}
	u.start(t)
	if u.entry(cgKept) != rs {
		t.Fatalf("losing the registry set a running container free: entry %d, want %d", u.entry(cgKept), rs)
	}
	if _, ok := u.fake.ruleset(rs); !ok {
		t.Fatalf("the orphan's ruleset %d was collected", rs)
	}
	st, err := u.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Orphans) != 1 || st.Orphans[0].CgroupID != cgKept || st.Orphans[0].Path != dirKept {
		t.Fatalf("status orphans: %+v, want cgroup %d at %s", st.Orphans, cgKept, dirKept)
	}

	if err := os.Remove(dirKept); err != nil {
		t.Fatal(err)
	}
	if err := u.sweepOrphans(); err != nil {
		t.Fatal(err)
	}
	if u.entry(cgKept) != 0 {
		t.Fatal("the orphan's entry outlived its cgroup")
	}
	if _, ok := u.fake.ruleset(rs); ok {
		t.Fatalf("the orphan's ruleset %d outlived its last user", rs)
	}
}

// A registration the kernel refuses is refused with api.ErrCannotEnforce
// (registrars refuse the container even when failing open), and the
// registry does not claim what the maps do not hold: a new container is
// not recorded, a re-registration keeps the record and entry it had.
func TestRegistrationRefusedByKernel(t *testing.T) {
	full := errors.New("map is full")
	for _, tc := range []struct {
		name           string
		putErr, setErr error
		reregister     bool // the container was registered before, in namespace shop
	}{
		{"ruleset refused", full, nil, false},
		{"cgroup entry refused", nil, full, false},
		{"cgroup entry refused on re-registration", nil, full, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUnitEngine(t, twoPolicies("shop", "bank"), Options{})
			dir, cg := u.cgroup(t, "c1")
			var before uint32
			if tc.reregister {
				u.register(t, api.Container{ID: "c1", CgroupPath: dir, Namespace: "shop"})
				before = u.entry(cg)
			}
			u.fake.putErr, u.fake.setErr = tc.putErr, tc.setErr
			_, err := u.Register(context.Background(), api.Container{ID: "c1", CgroupPath: dir, Namespace: "bank"})
			u.fake.putErr, u.fake.setErr = nil, nil
			if !errors.Is(err, api.ErrCannotEnforce) || !errors.Is(err, full) {
				t.Fatalf("register: got %v, want api.ErrCannotEnforce wrapping the kernel's refusal", err)
			}
			c, recorded := u.registered(t)["c1"]
			switch {
			case !tc.reregister && recorded:
				t.Fatalf("a refused container is recorded: %+v", c)
			case tc.reregister && (!recorded || c.Namespace != "shop"):
				t.Fatalf("the previous registration was not kept: recorded %v as %+v", recorded, c)
			}
			if got := u.entry(cg); got != before {
				t.Fatalf("cgroup entry after the refusal: ruleset %d, want %d", got, before)
			}
		})
	}
}

// An event the kernel queued before its container was unregistered (a
// container killed by a denial, removed by its runtime at once) still
// names the container; the memory of gone containers is bounded.
func TestEventNamesContainerGoneSince(t *testing.T) {
	u := newUnitEngine(t, map[string]string{"p.yaml": policyText("shop-lockdown", "", "shop", "/usr/bin/id")}, Options{})
	dir, cg := u.cgroup(t, "pod1")
	u.register(t, api.Container{ID: "killed", CgroupPath: dir, Namespace: "shop", Pod: "web", Name: "main"})
	if err := u.Unregister(context.Background(), "killed"); err != nil {
		t.Fatal(err)
	}
	ev := u.describe(bpf.Event{Action: bpf.ActionExecKilled, CgroupID: cg, Filename: "/usr/bin/id"})
	if ev.Container == nil || ev.Container.ID != "killed" || ev.Container.Namespace != "shop" || ev.Container.Pod != "web" || ev.Container.Name != "main" {
		t.Fatalf("event of an unregistered container names %+v, want killed in shop/web", ev.Container)
	}

	for i := range keepGone {
		u.gone.add(api.Container{ID: fmt.Sprintf("c%d", i), CgroupID: uint64(1_000_000 + i)})
	}
	if len(u.gone.byCgroup) != keepGone || len(u.gone.order) != keepGone {
		t.Fatalf("gone containers hold %d/%d entries, want %d", len(u.gone.byCgroup), len(u.gone.order), keepGone)
	}
	if ev := u.describe(bpf.Event{Action: bpf.ActionExecKilled, CgroupID: cg}); ev.Container != nil {
		t.Errorf("the oldest gone container is still named after %d newer ones: %+v", keepGone, ev.Container)
	}
}

// TestRegistrationsAreLogged: a registration and its removal each log a
// line (after the answer when a server asks; at once in process), and the
// removal by a sync too.
func TestRegistrationsAreLogged(t *testing.T) {
	var log syncBuffer
	u := newUnitEngine(t, nil, Options{Log: slog.New(slog.NewTextHandler(&log, nil))})
	dir, _ := u.cgroup(t, "a")
	u.register(t, api.Container{ID: "a", CgroupPath: dir, Source: "nri"})
	if err := u.Unregister(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	u.register(t, api.Container{ID: "b", CgroupPath: dir, Source: "nri"})
	if _, err := u.Sync(context.Background(), "nri", nil); err != nil {
		t.Fatal(err)
	}
	out := log.String()
	for _, want := range []string{"msg=registered id=a", "msg=unregistered id=a", "msg=registered id=b", "msg=unregistered id=b"} {
		if !strings.Contains(out, want) {
			t.Errorf("engine log has no %q:\n%s", want, out)
		}
	}
}

// syncBuffer is a log sink the engine's goroutines may write at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFailedRegistrationKeepsNoRoot: a registration that fails after its
// container's root was opened (the kernel refuses its ruleset) keeps no
// root for the container it did not register; one that succeeds keeps it.
func TestFailedRegistrationKeepsNoRoot(t *testing.T) {
	u := newUnitEngine(t, twoPolicies("shop", "bank"), Options{})
	dir, _ := u.cgroup(t, "c1")
	// The cgroup holds this test's process, whose root the rules resolve in.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kept := func() bool {
		u.roots.mu.Lock()
		defer u.roots.mu.Unlock()
		_, ok := u.roots.roots["c1"]
		return ok
	}
	u.fake.putErr = errors.New("map is full")
	_, err := u.Register(context.Background(), api.Container{ID: "c1", CgroupPath: dir, Namespace: "bank"})
	u.fake.putErr = nil
	if err == nil {
		t.Fatal("registration with its ruleset refused succeeded")
	}
	if kept() {
		t.Fatal("a root is kept for a container whose registration failed")
	}
	if r := u.register(t, api.Container{ID: "c1", CgroupPath: dir, Namespace: "bank"}); r.RootID == "" {
		t.Fatalf("registration resolved no root: %+v", r)
	}
	if !kept() {
		t.Fatal("a registered container's root is not kept")
	}
}
