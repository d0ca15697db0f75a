package linux

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "sub")
	path := filepath.Join(dir, "f")
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{{"one", 0o644}, {"two", 0o755}, {"three", 0o600}} {
		if err := WriteFileAtomic(path, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.data {
			t.Fatalf("content = %q, %v; want %q", got, err, tc.data)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tc.perm {
			t.Fatalf("mode = %v, %v; want %v despite umask 077", fi.Mode(), err, tc.perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	// A directory in the way: the old content stays and no temp file is left.
	if err := WriteFileAtomic(dir, []byte("x"), 0o644); err == nil {
		t.Error("replacing a directory succeeded")
	}
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("temp files left behind after a failed write: %v", entries)
	}
}

func TestReadLimited(t *testing.T) {
	if got, err := ReadLimited(strings.NewReader("12345"), 5, "five"); err != nil || string(got) != "12345" {
		t.Errorf("at the limit: %q, %v", got, err)
	}
	_, err := ReadLimited(strings.NewReader("123456"), 5, "six")
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "six is larger than 5 bytes") {
		t.Errorf("over the limit: %v", err)
	}
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, bytes.Repeat([]byte("a"), 10), 0o644)
	if _, err := ReadFileLimited(path, 9); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Errorf("file over the limit: %v", err)
	}
	if _, err := ReadFileLimited(path+".missing", 9); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
