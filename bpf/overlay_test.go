package bpf

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast-dev/holdfast/test/require"
)

// overlayRoot is a container-like root filesystem: an overlay mount whose
// lower layer holds dynamically linked binaries with their loader and
// libraries, as container runtimes build them.
type overlayRoot struct {
	lower, upper, merged string
}

// newOverlayRoot copies bins (host paths, kept at the same paths) with
// their libraries and files (in-root path → host source) into a lower
// layer and mounts an overlay with an empty upper layer over it.
func newOverlayRoot(t testing.TB, bins []string, files map[string]string) *overlayRoot {
	t.Helper()
	base := resolved(t, t.TempDir())
	o := &overlayRoot{
		lower:  filepath.Join(base, "lower"),
		upper:  filepath.Join(base, "upper"),
		merged: filepath.Join(base, "merged"),
	}
	work := filepath.Join(base, "work")
	for _, d := range []string{o.lower, o.upper, o.merged, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, bin := range bins {
		copyExecutable(t, bin, filepath.Join(o.lower, bin))
		for _, lib := range sharedLibraries(t, bin) {
			copyExecutable(t, lib, filepath.Join(o.lower, lib))
		}
	}
	for dst, src := range files {
		copyExecutable(t, src, filepath.Join(o.lower, dst))
	}
	opts := "lowerdir=" + o.lower + ",upperdir=" + o.upper + ",workdir=" + work
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, o.merged).CombinedOutput(); err != nil {
		require.Privileged(t, "overlayfs", fmt.Errorf("mount overlay on %s: %w: %s", o.merged, err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", o.merged).CombinedOutput(); err != nil {
			t.Errorf("unmount overlay %s: %v: %s", o.merged, err, out)
		}
	})
	return o
}

// copyUp makes the overlay copy path (in-root) to the upper layer, the way
// a container's first write to an image file does.
func (o *overlayRoot) copyUp(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(o.merged, path), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := os.Stat(filepath.Join(o.upper, path)); err != nil {
		t.Fatalf("copy-up of %s: %v", path, err)
	}
}

// sharedLibraries lists the libraries and loader bin needs, as ldd names
// them.
func sharedLibraries(t testing.TB, bin string) []string {
	t.Helper()
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs
}

// The loader route on a container's overlay root: every route that maps a
// denied file executable is killed, whether the file sits in the image
// (lower) layer or was copied up, and whether the task runs in the overlay
// as a container does (pivot_root), chrooted into it, or reaches it by a
// longer path. On
// overlayfs the kernel maps the layer's file, not the overlay's, so the
// mprotect checks see the layer file and must judge it by the path the
// task opened.
func TestMmapOverlay(t *testing.T) {
	env := newTestEnv(t)
	e := env.open(t)
	mapfile := buildMapfile(t)
	ldso := "/lib64/ld-linux-x86-64.so.2"
	lib := hostLibrary(t)
	o := newOverlayRoot(t, []string{"/usr/bin/id", "/usr/bin/true"}, map[string]string{
		"/bin/mapfile":      mapfile,
		"/usr/bin/id-up":    "/usr/bin/id",
		"/denied/libhf.so":  lib,
		"/up/libhf.so":      lib,
		"/allowed/libhf.so": lib,
	})
	for _, l := range sharedLibraries(t, mapfile) {
		if _, err := os.Stat(filepath.Join(o.merged, l)); err != nil {
			copyExecutable(t, l, filepath.Join(o.lower, l))
		}
	}
	o.copyUp(t, "/usr/bin/id-up")
	o.copyUp(t, "/up/libhf.so")

	r := openEvents(t, e)

	// How the task reaches the overlay: pivot_root into it, as a container
	// runtime does (paths start at the overlay); chroot into it, which does
	// not change the paths rules see (they start at the mount namespace's
	// root); or paths through the overlay mount.
	const (
		pivot = iota
		chroot
		host
	)
	for _, view := range []struct {
		name string
		kind int
	}{{"pivot_root into the overlay", pivot}, {"chrooted into the overlay", chroot}, {"paths through the overlay mount", host}} {
		t.Run(view.name, func(t *testing.T) {
			// in is the path the task uses for an in-root path, rule the
			// path a rule names for it.
			in := func(p string) string {
				if view.kind == host {
					return filepath.Join(o.merged, p)
				}
				return p
			}
			rule := func(p string) string {
				if view.kind == pivot {
					return p
				}
				return filepath.Join(o.merged, p)
			}
			// The layer-relative paths (what a walk of the layer file would
			// yield) get rules of their own so that the event says which
			// path matched.
			rs := Ruleset{ID: 7 + uint32(view.kind), Exec: []ExecRule{
				mustExecRule(t, rule("/usr/bin/id"), 11),
				mustExecRule(t, rule("/usr/bin/id-up"), 12),
				mustExecRule(t, rule("/denied/libhf.so"), 13),
				mustExecRule(t, rule("/up/libhf.so"), 14),
			}}
			if view.kind != pivot {
				rs.Exec = append(rs.Exec,
					mustExecRule(t, "/denied/libhf.so", 93),
					mustExecRule(t, "/up/libhf.so", 94))
			}
			cg := env.cgroup(t, "overlay-"+safeName(view.name))
			enforce(t, e, cg, rs)
			run := func(argv ...string) *exec.Cmd {
				switch view.kind {
				case pivot:
					return pivoted(cg, o.merged, argv...)
				case chroot:
					cmd := command(cg, argv[0], argv[1:]...)
					cmd.SysProcAttr.Chroot = o.merged
					cmd.Dir = "/"
					return cmd
				}
				if argv[0] == "/bin/mapfile" {
					argv[0] = mapfile
				}
				return command(cg, argv[0], argv[1:]...)
			}
			tests := []struct {
				name    string
				argv    []string
				killed  bool
				wantOut string
				file    string
				rule    uint32
			}{
				{name: "loader runs a denied binary of the image", argv: []string{ldso, in("/usr/bin/id")}, killed: true, file: "id", rule: 11},
				{name: "loader runs a copied-up denied binary", argv: []string{ldso, in("/usr/bin/id-up")}, killed: true, file: "id-up", rule: 12},
				{name: "loader runs an allowed binary", argv: []string{ldso, in("/usr/bin/true")}},
				{name: "dlopen of a denied library of the image", argv: []string{"/bin/mapfile", "dlopen", in("/denied/libhf.so")}, killed: true, file: "libhf.so", rule: 13},
				{name: "dlopen of a copied-up denied library", argv: []string{"/bin/mapfile", "dlopen", in("/up/libhf.so")}, killed: true, file: "libhf.so", rule: 14},
				{name: "dlopen of an allowed library", argv: []string{"/bin/mapfile", "dlopen", in("/allowed/libhf.so")}, wantOut: "OK\n"},
				{name: "mmap exec of a denied library of the image", argv: []string{"/bin/mapfile", "exec", in("/denied/libhf.so")}, killed: true, file: "libhf.so", rule: 13},
				{name: "mmap exec of a copied-up denied library", argv: []string{"/bin/mapfile", "exec", in("/up/libhf.so")}, killed: true, file: "libhf.so", rule: 14},
				{name: "mprotect exec of a denied library of the image", argv: []string{"/bin/mapfile", "mprotect", in("/denied/libhf.so")}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 13},
				{name: "mprotect exec of a copied-up denied library", argv: []string{"/bin/mapfile", "mprotect", in("/up/libhf.so")}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 14},
				{name: "pkey_mprotect exec of a denied library of the image", argv: []string{"/bin/mapfile", "pkey_mprotect", in("/denied/libhf.so")}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 13},
				{name: "mprotect over an anonymous mapping and a copied-up denied library", argv: []string{"/bin/mapfile", "span", in("/up/libhf.so")}, killed: true, wantOut: "mapped\n", file: "libhf.so", rule: 14},
				{name: "mprotect exec of an allowed library", argv: []string{"/bin/mapfile", "mprotect", in("/allowed/libhf.so")}, wantOut: "mapped\nOK\n"},
				{name: "mmap read of a denied library", argv: []string{"/bin/mapfile", "read", in("/denied/libhf.so")}, wantOut: "OK\n"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					out, err := run(tc.argv...).Output()
					if tc.killed {
						checkMmapKilled(t, r, tc.argv, out, err, tc.wantOut,
							Event{RuleID: tc.rule, Filename: tc.file, CgroupID: cg.id, Ruleset: rs.ID})
						return
					}
					checkRan(t, tc.argv, out, err, tc.wantOut)
				})
			}
		})
	}
}
