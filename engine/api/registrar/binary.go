package registrar

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// FindHoldfast returns the holdfast binary a registrar's slow path runs:
// configured when set, else HoldfastBinaryName next to the registrar's own
// binary, else in PATH (absolute entries only: a runtime gives hooks no
// working directory worth trusting).
func FindHoldfast(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	var nextTo string
	if exe, err := os.Executable(); err == nil {
		nextTo = filepath.Join(filepath.Dir(exe), HoldfastBinaryName)
		if executable(nextTo) {
			return nextTo, nil
		}
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if p := filepath.Join(dir, HoldfastBinaryName); filepath.IsAbs(dir) && executable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("find the %s binary (not at %s) in PATH: %w", HoldfastBinaryName, nextTo, errNotFound)
}

var errNotFound = errors.New("executable file not found")

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
