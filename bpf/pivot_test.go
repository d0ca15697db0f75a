package bpf

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// pivotHelper runs argv inside root as a container runtime starts a
// container: a mount namespace of its own, root bind-mounted on itself,
// pivot_root into it, the old root detached. Paths then start at root, which
// is the namespace's root mount (a chroot leaves the old root above it).
func pivotHelper(args []string) int {
	if len(args) < 2 {
		fmt.Fprintf(os.Stderr, "pivot: want ROOT ARGV..., got %q\n", args)
		return 2
	}
	runtime.LockOSThread() // the namespace is this thread's; exec from it
	root, argv := args[0], args[1:]
	steps := []struct {
		what string
		do   func() error
	}{
		{"unshare mount namespace", func() error { return unix.Unshare(unix.CLONE_NEWNS) }},
		{"make / private", func() error { return unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") }},
		{"bind " + root, func() error { return unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"chdir " + root, func() error { return unix.Chdir(root) }},
		{"pivot_root", func() error { return unix.PivotRoot(".", ".") }},
		{"detach the old root", func() error { return unix.Unmount(".", unix.MNT_DETACH) }},
		{"chdir /", func() error { return unix.Chdir("/") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			fmt.Fprintf(os.Stderr, "pivot: %s: %v\n", s.what, err)
			return 1
		}
	}
	err := unix.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "pivot: exec %s: %v\n", argv[0], err)
	return 1
}

// pivoted runs argv (paths inside root) in cg after pivot_root into root.
func pivoted(cg *testCgroup, root string, argv ...string) *exec.Cmd {
	return helper(cg, "pivot", append([]string{root}, argv...)...)
}
