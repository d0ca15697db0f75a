package registrar

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureAndRemoveFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "f")
	steps := []struct {
		data string
		perm os.FileMode
		want string
	}{
		{"a", 0o644, Created},
		{"a", 0o644, Unchanged},
		{"b", 0o644, Updated},
		{"b", 0o755, Updated},
	}
	for _, s := range steps {
		c, err := EnsureFile(path, []byte(s.data), s.perm)
		if err != nil || c.Action != s.want || c.Path != path {
			t.Fatalf("EnsureFile(%q, %v) = %v, %v; want %s", s.data, s.perm, c, err, s.want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode = %v, %v", fi, err)
	}
	for _, want := range []string{Removed, Absent} {
		if c, err := RemoveFile(path); err != nil || c.Action != want {
			t.Errorf("RemoveFile = %v, %v; want %s", c, err, want)
		}
	}
	if Changed([]Change{{Action: Unchanged}, {Action: Absent}}) || !Changed([]Change{{Action: Unchanged}, {Action: Edited}}) {
		t.Error("Changed misjudges")
	}
	if s := (Change{Action: BackedUp, Path: "/c", Detail: "to /c.bak"}).String(); s != "backed up /c: to /c.bak" {
		t.Errorf("String = %q", s)
	}
}
