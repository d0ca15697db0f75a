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

// TestOpenRegular: a FIFO nobody writes to is refused at once, as are a
// directory and a symlink to one; a regular file (through a symlink too)
// opens.
func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"link-dir": dir, "link-file": file} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"fifo", "is not a regular file (a FIFO)"},
		{".", "is not a regular file (a directory)"},
		{"link-dir", "is not a regular file (a directory)"},
		{"file", ""},
		{"link-file", ""},
	} {
		f, err := OpenRegular(filepath.Join(dir, tc.name))
		if f != nil {
			f.Close()
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("OpenRegular(%s) = %v, want error %q", tc.name, err, tc.want)
		}
		data, err := ReadRegularFile(filepath.Join(dir, tc.name), 10, "test file")
		if tc.want == "" && (err != nil || string(data) != "x") || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ReadRegularFile(%s) = %q, %v, want error %q", tc.name, data, err, tc.want)
		}
	}
}

// TestReadRegularFile: the whole file at every size around the read
// sizes and the limit, more than the limit refused naming the file, a
// missing file an fs.ErrNotExist.
func TestReadRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	const limit = 2000
	for _, size := range []int{0, 1, 511, 512, 513, 1024, 1999, 2000, 2001, 5000} {
		data := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadRegularFile(path, limit, "the file")
		if size > limit {
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "the file is larger than 2000 bytes") {
				t.Errorf("%d bytes: %v, want too large", size, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%d bytes: read %d bytes, %v", size, len(got), err)
		}
	}
	// /proc files report size 0 and are read to their end all the same.
	got, err := ReadFileLimited("/proc/self/status", 1<<20)
	if err != nil || !bytes.Contains(got, []byte("\nVmRSS:")) {
		t.Errorf("/proc/self/status: %q, %v", got, err)
	}
	if _, err := ReadRegularFile(path+".missing", limit, "missing"); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path+".missing") {
		t.Errorf("missing file: %v", err)
	}
}

// TestReadProcRecord: a /proc file rendered as one record reads whole in
// one read when it fits the first buffer and over several when it does
// not, the same as reading it to its end; the limit holds.
func TestReadProcRecord(t *testing.T) {
	// /proc/self/cgroup fits the first buffer; /proc/self/status does not
	// (and is one record too: proc_pid_status).
	for _, path := range []string{"/proc/self/cgroup", "/proc/self/status"} {
		want, err := ReadFileLimited(path, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadProcRecord(path, 1<<20)
		// status moves (its memory, its context switches) between reads:
		// the fields before them are what is compared.
		head := func(b []byte) []byte {
			if i := bytes.Index(b, []byte("\nVmPeak")); i >= 0 {
				return b[:i]
			}
			return b
		}
		// And both end with the same line's name: nothing cut short.
		lastName := func(b []byte) []byte {
			lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
			name, _, _ := bytes.Cut(lines[len(lines)-1], []byte(":"))
			return name
		}
		if err != nil || len(got) < 100 || !bytes.Equal(head(got), head(want)) || !bytes.Equal(lastName(got), lastName(want)) {
			t.Errorf("%s: read %d bytes (%v), to its end %d", path, len(got), err, len(want))
		}
	}
	if _, err := ReadProcRecord("/proc/self/status", 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("/proc/self/status over a 100-byte limit: %v, want too large", err)
	}
}

// TestReadLimitHolds: a file of unknown size (ReadFileLimited,
// ReadProcRecord: /proc files report none) is refused past limit bytes,
// however the buffer grew, and read whole up to it.
func TestReadLimitHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	const limit = 700
	for _, size := range []int{0, 1, 511, 512, 513, 699, 700, 701, 800, 1023, 1024, 1500, 5000} {
		data := bytes.Repeat([]byte("abcdefg"), size/7+1)[:size]
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for name, read := range map[string]func(string, int64) ([]byte, error){"ReadFileLimited": ReadFileLimited, "ReadProcRecord": ReadProcRecord} {
			got, err := read(path, limit)
			if size > limit {
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("%s of %d bytes over a %d-byte limit: %d bytes, %v; want too large", name, size, limit, len(got), err)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s of %d bytes: read %d bytes, %v", name, size, len(got), err)
			}
		}
	}
}
