// Package linux is the one place holdfast makes raw Linux system calls:
// peer credentials on Unix sockets, cgroup inode numbers, filesystem magic
// and mounts. Everything else goes through it, so the unsafe surface stays small.
// It also holds the file primitives every layer shares, so each is written
// once: the state-dir lock, the atomic replace (fsync of file and directory)
// and the size-bounded read.
//
// Any holdfast package may import it; it imports no holdfast package. It
// lives under bpf/ because bpf is the bottom layer and may import nothing
// from engine/, yet both need these calls.
package linux
