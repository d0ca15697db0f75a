package registrar

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/holdfast-dev/holdfast/bpf/linux"
)

// Actions a Change reports.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
	Removed   = "removed"
	Absent    = "absent"
	BackedUp  = "backed up"
	Edited    = "edited"
)

// Change is what a registrar's installer did to one file.
type Change struct {
	Action string
	Path   string
	Detail string // what was edited, or where a backup went; may be empty
}

func (c Change) String() string {
	if c.Detail == "" {
		return c.Action + " " + c.Path
	}
	return c.Action + " " + c.Path + ": " + c.Detail
}

// Changed reports whether any change altered a file.
func Changed(changes []Change) bool {
	for _, c := range changes {
		if c.Action != Unchanged && c.Action != Absent {
			return true
		}
	}
	return false
}

// EnsureFile makes path hold exactly data with perm, written atomically, and
// reports Unchanged when it already did.
func EnsureFile(path string, data []byte, perm fs.FileMode) (Change, error) {
	action := Created
	if old, err := os.ReadFile(path); err == nil {
		fi, serr := os.Stat(path)
		if serr == nil && bytes.Equal(old, data) && fi.Mode().Perm() == perm.Perm() {
			return Change{Action: Unchanged, Path: path}, nil
		}
		action = Updated
	} else if !errors.Is(err, os.ErrNotExist) {
		return Change{}, fmt.Errorf("read %s: %w", path, err)
	}
	if err := linux.WriteFileAtomic(path, data, perm); err != nil {
		return Change{}, err
	}
	return Change{Action: action, Path: path}, nil
}

// RemoveFile removes path, reporting Absent when it was not there.
func RemoveFile(path string) (Change, error) {
	switch err := os.Remove(path); {
	case err == nil:
		return Change{Action: Removed, Path: path}, nil
	case errors.Is(err, os.ErrNotExist):
		return Change{Action: Absent, Path: path}, nil
	default:
		return Change{}, fmt.Errorf("remove %s: %w", path, err)
	}
}
