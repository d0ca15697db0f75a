// Package layering_test holds the import rules of the repository: layers point
// down only. bpf (the bottom) imports nothing from engine/; the registrars
// (hook/, nri-plugin/) reach the engine only through engine/api; engine/api
// imports nothing of the daemon. It reads the real import graph with go list.
package layering_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/holdfast-dev/holdfast"

// rule: every package under scope (non-test code, all transitive imports)
// may import, of this module, only packages under one of allowed.
type rule struct {
	scope   string
	allowed []string
}

var leaves = []string{"bpf/linux", "bpf/cgroup"}

func rules() []rule {
	return []rule{
		{scope: "bpf/linux"},
		{scope: "bpf/cgroup", allowed: []string{"bpf/linux"}},
		{scope: "bpf", allowed: []string{"bpf"}},
		{scope: "engine/api", allowed: append([]string{"engine/api"}, leaves...)},
		{scope: "hook", allowed: append([]string{"hook", "engine/api"}, leaves...)},
		{scope: "nri-plugin", allowed: append([]string{"nri-plugin", "engine/api"}, leaves...)},
	}
}

// under reports whether pkg (module-relative) is dir or below it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

type listedPackage struct {
	ImportPath string
	Deps       []string
	// Direct imports of the package's tests: a test of bpf must not reach
	// into engine/ either.
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps,TestImports,XTestImports", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./... in %s: %v: %s", root, err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// violations lists "pkg imports dep" for every import of this module that
// the first rule whose scope holds pkg does not allow. Rules are tried in
// order, so narrower scopes come first.
func violations(pkgs []listedPackage, rules []rule) (bad []string, scoped map[string]int) {
	scoped = map[string]int{}
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		for _, r := range rules {
			if !under(rel, r.scope) {
				continue
			}
			scoped[r.scope]++
			deps := append(append(append([]string{}, p.Deps...), p.TestImports...), p.XTestImports...)
			for _, d := range deps {
				drel, ok := strings.CutPrefix(d, module+"/")
				if !ok || drel == rel || allowedFor(drel, r) {
					continue
				}
				// Tests may use the test helpers; code may not.
				if under(drel, "test") && !slices.Contains(p.Deps, d) {
					continue
				}
				bad = append(bad, rel+" imports "+drel)
			}
			break
		}
	}
	return bad, scoped
}

func allowedFor(dep string, r rule) bool {
	for _, a := range r.allowed {
		if under(dep, a) {
			return true
		}
	}
	return false
}

func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to read the import graph: %v", err)
	}
	pkgs := listPackages(t)
	bad, scoped := violations(pkgs, rules())
	for _, r := range rules() {
		if scoped[r.scope] == 0 {
			t.Errorf("rule for %s matched no package: the tree moved, update the rules", r.scope)
		}
	}
	for _, b := range bad {
		t.Errorf("forbidden import: %s", b)
	}
}

// TestViolationsCatchesForbiddenImports proves the checker fails on the
// imports the rules exist for, on a made-up graph.
func TestViolationsCatchesForbiddenImports(t *testing.T) {
	m := func(s string) string { return module + "/" + s }
	pkgs := []listedPackage{
		{ImportPath: m("bpf"), Deps: []string{m("bpf/linux"), m("engine/cgroup")}},
		{ImportPath: m("hook"), Deps: []string{m("engine/api"), m("engine/daemon")}},
		{ImportPath: m("nri-plugin"), Deps: []string{m("engine/api/registrar"), m("engine/policy")}},
		{ImportPath: m("engine/api"), Deps: []string{m("engine/registry")}},
		{ImportPath: m("bpf/linux"), TestImports: []string{m("test/require")}},
		{ImportPath: m("hook/hooksd"), Deps: []string{m("test/require")}},
	}
	bad, _ := violations(pkgs, rules())
	want := []string{
		"bpf imports engine/cgroup",
		"hook imports engine/daemon",
		"nri-plugin imports engine/policy",
		"engine/api imports engine/registry",
		"hook/hooksd imports test/require",
	}
	if strings.Join(bad, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(bad, "\n"), strings.Join(want, "\n"))
	}
}

// hookProcess is the binary every container create and delete runs, and
// what it must not link: each package initialises at every start (package
// net and its address tables, encoding/json, the OCI spec types, the
// protocol's client),
// and the full hook lives in the holdfast binary (holdfast oci-hook).
const hookProcess = "hook/cmd/holdfast-oci-hook"

var notInHookProcess = []string{
	"net", "log/slog", "os/exec", "encoding/json", "github.com/opencontainers/runtime-spec/specs-go",
	module + "/engine/api", module + "/engine/api/ocihook", module + "/engine/api/fallback", module + "/hook",
}

// linkedOfList returns which of the listed packages deps holds.
func linkedOfList(deps, list []string) []string {
	var found []string
	for _, p := range list {
		if slices.Contains(deps, p) {
			found = append(found, p)
		}
	}
	return found
}

func TestHookProcessLinksLittle(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../"+hookProcess).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", hookProcess, err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, module+"/hook/fastpath") {
		t.Fatalf("%s does not link hook/fastpath: the list is stale (%d deps)", hookProcess, len(deps))
	}
	for _, p := range linkedOfList(deps, notInHookProcess) {
		t.Errorf("%s links %s", hookProcess, p)
	}
}

// TestLinkedOfList: the check finds a forbidden package, and only those.
func TestLinkedOfList(t *testing.T) {
	got := linkedOfList([]string{"fmt", "net", module + "/hook/fastpath", module + "/engine/api"}, notInHookProcess)
	if strings.Join(got, " ") != "net "+module+"/engine/api" {
		t.Errorf("found %v", got)
	}
}
