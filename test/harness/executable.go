package harness

import (
	"os"
	"path/filepath"
	"testing"
)

// Executable writes content as an executable file named name in a new
// temporary directory and returns its path: a stand-in for a binary.
func Executable(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
