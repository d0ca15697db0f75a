package eventlog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// openTemp opens a log in a temporary directory, closed when the test ends.
func openTemp(t *testing.T, maxBytes int64, backups int) (*File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := Open(path, maxBytes, backups)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func TestRotationKeepsBoundedBackups(t *testing.T) {
	l, path := openTemp(t, 1000, 2)
	var last string
	for i := range 1000 {
		last = fmt.Sprintf("{\"n\":%d,\"pad\":\"%s\"}\n", i, bytes.Repeat([]byte("x"), 40))
		if _, err := l.Write([]byte(last)); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, p := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi.Size() > 1000 {
			t.Errorf("%s has %d bytes, over the 1000 limit", p, fi.Size())
		}
		total += fi.Size()
		data, _ := os.ReadFile(p)
		if len(data) == 0 || data[len(data)-1] != '\n' {
			t.Errorf("%s does not end in a whole line", p)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a third backup exists: %v", err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasSuffix(data, []byte(last)) {
		t.Error("the newest line is not at the end of the current file")
	}
}

func TestNoBackups(t *testing.T) {
	l, path := openTemp(t, 100, 0)
	for range 10 {
		l.Write(bytes.Repeat([]byte("y"), 39))
	}
	if fi, _ := os.Stat(path); fi.Size() > 100 {
		t.Errorf("size %d over the limit", fi.Size())
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("a backup exists with 0 backups: %v", err)
	}
}
