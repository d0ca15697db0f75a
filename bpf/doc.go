// Package bpf is holdfast's enforcement core: the eBPF programs (holdfast.c,
// compiled by bpf2go into the committed holdfast_bpfel.*), the loader that
// pins them, and the writers of the rule maps.
//
// Ownership: Open returns an Enforcer holding file descriptors; the kernel
// objects themselves are owned by their pins under Layout.ABIDir. Closing an
// Enforcer (or the process exiting) leaves enforcement in place; only
// Uninstall, which removes the pins, detaches the programs. A later Open
// adopts a complete pinned set instead of replacing it, so enforcement holds
// from a container's first instruction and across engine restarts.
//
// Every layer may import it (the engine, the holdfast command, tests); it
// imports no holdfast package outside bpf/.
package bpf
