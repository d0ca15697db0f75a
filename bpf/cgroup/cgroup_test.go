package cgroup

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/require"
)

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		fixture  string
		wantRoot string
		wantMode string
		wantErr  error
	}{
		{"mountinfo-unified", "/sys/fs/cgroup", Unified, nil},
		{"mountinfo-hybrid", "/sys/fs/cgroup/unified", Hybrid, nil},
		{"mountinfo-v1-only", "", "", ErrNoV2},
		// A bind mount of a sub-cgroup is not the root; octal escapes decode.
		{"mountinfo-container", "/run/my cgroup", Unified, nil},
		// Inside a cgroup namespace the hierarchy root shows as "/..".
		{"mountinfo-namespaced", "/sys/fs/cgroup/unified", Hybrid, nil},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			f, err := os.Open("testdata/" + tc.fixture)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := ParseMountinfo(f)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if m.Root != tc.wantRoot || m.Mode != tc.wantMode {
				t.Fatalf("got %+v, want root %q mode %q", m, tc.wantRoot, tc.wantMode)
			}
			if m.Namespaced != (tc.fixture == "mountinfo-namespaced") {
				t.Fatalf("Namespaced = %v for %s", m.Namespaced, tc.fixture)
			}
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{"unified", "0::/kubepods/besteffort/pod1/abc\n", "/kubepods/besteffort/pod1/abc", ""},
		{"hybrid", "12:memory:/user.slice\n1:name=systemd:/user.slice/x\n0::/user.slice/x\n", "/user.slice/x", ""},
		{"v1 only", "12:memory:/user.slice\n", "", "no cgroup v2"},
		{"relative", "0::x/y\n", "", "not absolute"},
		{"empty", "", "", "no cgroup v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcCgroup(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestDir(t *testing.T) {
	m := Mount{Root: "/sys/fs/cgroup/unified"}
	for in, want := range map[string]string{
		"/a/b":        "/sys/fs/cgroup/unified/a/b",
		"/":           "/sys/fs/cgroup/unified",
		"/a/../../..": "/sys/fs/cgroup/unified",
	} {
		if got := m.Dir(in); got != want {
			t.Errorf("Dir(%q) = %q, want %q", in, got, want)
		}
	}
}

// On the live host: our own cgroup's ID is the inode of its directory, and
// a directory that is not a cgroup is refused.
func TestLiveHost(t *testing.T) {
	m, err := Detect()
	if err != nil {
		require.Privileged(t, "cgroup v2 mount", err)
	}
	dir, err := m.DirOfPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	id, err := ID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id == 0 {
		t.Fatalf("cgroup id of %s is 0", dir)
	}
	if _, err := ID(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a cgroup v2 directory") {
		t.Fatalf("a temp dir was accepted as a cgroup: %v", err)
	}
	if _, err := m.DirOfPID(1 << 30); err == nil {
		t.Fatal("a pid that does not exist was resolved")
	}
}
