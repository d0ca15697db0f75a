package cgroup

import (
	"os"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/require"
)

// TestFSAgreesWithID checks FS against ID on this host's cgroup v2 mount,
// and that it refuses what ID refuses: a directory of another file system
// (also below the root: /proc is one) and a missing one.
func TestFSAgreesWithID(t *testing.T) {
	m, err := Detect()
	if err != nil {
		require.Privileged(t, "cgroup v2 mount", err)
	}
	fs, err := OpenFS(m.Root)
	if err != nil {
		t.Fatal(err)
	}
	own, err := m.DirOfPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{m.Root, own} {
		want, err := ID(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := fs.ID(dir); err != nil || got != want {
			t.Fatalf("FS.ID(%s) = %d, %v; ID says %d", dir, got, err, want)
		}
	}
	for _, dir := range []string{t.TempDir(), "/proc/self", own + "/no-such-cgroup"} {
		if id, err := fs.ID(dir); err == nil {
			t.Fatalf("FS.ID(%s) = %d, want an error", dir, id)
		}
	}
	if _, err := OpenFS(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a cgroup v2 directory") {
		t.Fatalf("a temp dir was opened as a cgroup file system: %v", err)
	}
}
