package bpf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ABI names the layout of the maps and programs pinned by this build. A
// change to a map's key or value or to a program's contract needs a new ABI:
// Open installs it beside the old one and removes the old pins only after
// the new programs are attached.
const ABI = "v3"

// DefaultRoot is where holdfast pins its objects unless told otherwise.
const DefaultRoot = "/sys/fs/bpf/holdfast"

// ErrOutsideLayout is returned (in an *fs.PathError) for a path that is not
// below the layout's root.
var ErrOutsideLayout = errors.New("path is outside the holdfast bpffs layout")

// Kinds of pinned objects, also the names of their subdirectories.
const (
	KindMap     = "map"
	KindProgram = "program"
	KindLink    = "link"
)

var kindDirs = map[string]string{KindMap: "maps", KindProgram: "progs", KindLink: "links"}

// Layout computes every bpffs path holdfast uses:
//
//	Root/<ABI>/maps/<map>
//	Root/<ABI>/progs/<program>
//	Root/<ABI>/links/<program>
//
// A set is first pinned under a staging directory in Root and renamed to
// Root/<ABI> in one step, so Root/<ABI> only ever holds a complete set
// unless someone removed pins by hand.
type Layout struct {
	Root string
}

// abiDirName matches ABI directories of any version; other entries in Root
// are left alone by cleanups except holdfast's own staging and trash dirs.
var abiDirName = regexp.MustCompile(`^v[0-9]+$`)

// bpffs refuses names with dots, so these cannot be hidden files.
const (
	stagingPrefix = "staging-"
	trashPrefix   = "trash-"
)

func (l Layout) validate() error {
	if l.Root == "" || !filepath.IsAbs(l.Root) || filepath.Clean(l.Root) != l.Root || l.Root == "/" {
		return fmt.Errorf("bpffs layout root %q: must be a clean absolute path below /", l.Root)
	}
	return nil
}

// ABIDir is the directory of this build's pinned set.
func (l Layout) ABIDir() string { return l.abiDir(ABI) }

func (l Layout) abiDir(abi string) string { return filepath.Join(l.Root, abi) }

// Pin is the path of the object of the given kind and name in this ABI.
func (l Layout) Pin(kind, name string) string { return pinIn(l.ABIDir(), kind, name) }

func pinIn(dir, kind, name string) string { return filepath.Join(dir, kindDirs[kind], name) }

// contains reports whether path lies strictly below Root.
func (l Layout) contains(path string) bool {
	rel, err := filepath.Rel(l.Root, filepath.Clean(path))
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") && filepath.IsAbs(path)
}

// remove unpins everything at or below path (which detaches links nobody
// else holds). It refuses paths outside the layout.
func (l Layout) remove(path string) error {
	if !l.contains(path) {
		return &fs.PathError{Op: "remove", Path: path, Err: ErrOutsideLayout}
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	return nil
}

// rename moves a directory within the layout.
func (l Layout) rename(from, to string) error {
	for _, p := range []string{from, to} {
		if !l.contains(p) {
			return &fs.PathError{Op: "rename", Path: p, Err: ErrOutsideLayout}
		}
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("rename pinned set: %w", err)
	}
	return nil
}

// others lists the entries of Root that belong to holdfast but not to this
// ABI: old or newer ABI dirs and leftovers of interrupted installs.
func (l Layout) others() ([]string, error) {
	entries, err := os.ReadDir(l.Root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", l.Root, err)
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		if name == ABI || !e.IsDir() {
			continue
		}
		if abiDirName.MatchString(name) || strings.HasPrefix(name, stagingPrefix) || strings.HasPrefix(name, trashPrefix) {
			paths = append(paths, filepath.Join(l.Root, name))
		}
	}
	return paths, nil
}
