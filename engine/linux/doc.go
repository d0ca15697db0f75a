// Package linux is the one place holdfast makes raw Linux system calls:
// peer credentials on Unix sockets, cgroup inode numbers, filesystem magic
// and mounts. Everything else goes through it, so the unsafe surface stays small.
package linux
