package bpf

// The generated holdfast_bpfel.{go,o} are committed; CI regenerates them and
// fails on a diff, so the object always matches holdfast.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type event -type cgroup_rule -type exec_key -type exec_value -type net4_key -type net6_key -type port_rule -type port_rules -type chunk_key -type port_chunk -type socket_key -type ruleset_info -type hash_key -type file_key -type file_value -type denial_key -type denial_value -type audit_key -type process -type process_env -type process_config holdfast holdfast.c -- -O2 -Wall -Werror
