package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// OCIBundle writes a minimal bundle config.json (annotations and, if set,
// linux.cgroupsPath) into a temp dir and returns the dir.
func OCIBundle(t testing.TB, annotations map[string]string, cgroupsPath string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"ociVersion": "1.0.2", "annotations": annotations}
	if cgroupsPath != "" {
		cfg["linux"] = map[string]any{"cgroupsPath": cgroupsPath}
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// OCIState is the state JSON a runtime passes to a hook on stdin.
func OCIState(id, status string, pid int, bundle string, annotations map[string]string) string {
	data, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": id, "status": status, "pid": pid, "bundle": bundle, "annotations": annotations})
	return string(data)
}

// RuntimeAnnotations reads one of engine/api/ocihook/testdata's fixtures: the annotations
// a runtime (CRI-O, containerd) puts on a sandbox or application container.
func RuntimeAnnotations(t testing.TB, name string) map[string]string {
	t.Helper()
	path := filepath.Join(RepoRoot(), "engine", "api", "ocihook", "testdata", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a map[string]string
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return a
}
