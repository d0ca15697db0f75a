package ocihook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/holdfast-dev/holdfast/test/harness"
)

// runcConfig is testdata/runc-spec.json (runc spec's output with a
// rootfs, args and a CRI-O cgroupsPath) carrying the CRI-O application
// container's annotations: the config.json a CRI-O container's hook reads.
func runcConfig(tb testing.TB) []byte {
	tb.Helper()
	data, err := os.ReadFile("testdata/runc-spec.json")
	if err != nil {
		tb.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		tb.Fatal(err)
	}
	spec["annotations"] = harness.RuntimeAnnotations(tb, "crio-container.json")
	if data, err = json.MarshalIndent(spec, "", "  "); err != nil {
		tb.Fatal(err)
	}
	return data
}

// BenchmarkParseBundleConfig decodes a CRI-O container's config.json, as
// the engine does for every hook run:
//
//	go test -run '^$' -bench 'BundleConfig|ParseState' -benchmem ./engine/api/ocihook/
func BenchmarkParseBundleConfig(b *testing.B) {
	data := runcConfig(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBundleConfig(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadBundleConfig is BenchmarkParseBundleConfig with the file
// read from a bundle directory.
func BenchmarkReadBundleConfig(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), runcConfig(b), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadBundleConfig(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseState decodes the state runc hands a CRI-O container's
// hook, which carries the container's annotations.
func BenchmarkParseState(b *testing.B) {
	data, err := json.Marshal(map[string]any{"ociVersion": "1.0.2", "id": "e3d2c1b0a9f8", "status": "creating", "pid": 4242,
		"bundle": "/run/containers/storage/overlay-containers/e3d2c1b0a9f8/userdata", "annotations": harness.RuntimeAnnotations(b, "crio-container.json")})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseState(data); err != nil {
			b.Fatal(err)
		}
	}
}
