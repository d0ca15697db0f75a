package registry

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast-dev/holdfast/engine/api"
	"github.com/holdfast-dev/holdfast/test/require"
)

// smallFS mounts a 256 KiB tmpfs for the test.
func smallFS(t *testing.T) string {
	t.Helper()
	require.Root(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		require.Privileged(t, "tmpfs mount", fmt.Errorf("%v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the filesystem is full, leaving less than one
// journal line of room, and returns a function that frees it again.
func fill(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("x"), 4096)
	for _, size := range []int{4096, 64} {
		for {
			if _, err := f.Write(chunk[:size]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return func() { os.Remove(path) }
}

func TestFullDisk(t *testing.T) {
	dir := filepath.Join(smallFS(t), "registry")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(api.Container{ID: "before", CgroupID: 1}); err != nil {
		t.Fatal(err)
	}
	free := fill(t, filepath.Dir(dir))
	big := api.Container{ID: "during", CgroupID: 2, Labels: map[string]string{"pad": strings.Repeat("p", 8192)}}
	err = s.Put(big)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "state dir full") {
		t.Fatalf("put on a full disk: %v, want ENOSPC saying the state dir is full", err)
	}
	if _, ok := s.Get("during"); ok {
		t.Error("a registration that was not recorded is in the store")
	}
	data, _ := os.ReadFile(filepath.Join(dir, journalName))
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Errorf("journal ends in a torn line: %q", data[max(0, len(data)-80):])
	}
	// Opening on a full disk keeps what the journal holds.
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	if _, ok := s.Get("before"); !ok {
		t.Error("registration lost by an open on a full disk")
	}
	free()
	if err := s.Put(api.Container{ID: "after", CgroupID: 3}); err != nil {
		t.Fatalf("put once space is back: %v", err)
	}
	s.Close()
	s = open(t, dir)
	expectIDs(t, s, "after a full disk", []string{"before", "after"}, []string{"during"})
}

// A fragment of a cut write followed by whole lines loses only the
// fragment's own entry.
func TestTornLineBeforeWholeOne(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, id := range []string{"a", "b"} {
		if err := s.Put(api.Container{ID: id, CgroupID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"op":"delete","id":"a"`) // cut short, no newline
	f.WriteString(`{"op":"put","container":{"id":"c","cgroupId":3}}` + "\n")
	f.Close()
	s2, err := Open(dir)
	if s2 == nil {
		t.Fatal(err)
	}
	defer s2.Close()
	expectIDs(t, s2, fmt.Sprintf("around a torn line (open error: %v)", err), []string{"a", "b", "c"}, nil)
}
