package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// Helm returns the helm binary test/scripts/build-helm.sh caches
// ($HOLDFAST_HELM_BIN or /var/cache/holdfast/helm-v3.22.0/bin), building it
// on first use: a few minutes, once per machine.
func Helm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		dir := os.Getenv("HOLDFAST_HELM_BIN")
		if dir == "" {
			dir = "/var/cache/holdfast/helm-v3.22.0/bin"
		}
		helmPath = filepath.Join(dir, "helm")
		if _, err := os.Stat(helmPath); err == nil {
			return
		}
		script := filepath.Join(RepoRoot(), "test", "scripts", "build-helm.sh")
		if out, err := exec.Command("sh", script, dir).CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("build helm with %s: %w\n%s", script, err, out)
		}
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}
