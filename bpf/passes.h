/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Files that passed the deny rules, cached: a process loading its libraries,
 * or exec'ing dynamically linked binaries, meets the same few files (ld.so,
 * libc) again and again. Only passes are cached, never denials; a pass is
 * void after any path-changing system call on the node (path_gen) or any
 * change of exec rules (rules_gen). Used in kill mode, where the programs
 * that bump path_gen run. */
#ifndef HOLDFAST_PASSES_H
#define HOLDFAST_PASSES_H

/* Set by the loader: the time of its last change of exec rules, which
 * voids every cached pass. */
struct mmap_config {
	__u64 rules_gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mmap_config);
} mmap_config SEC(".maps");

/* Bumped by the programs when a system call that can change the path of an
 * existing file (rename, mount, umount, move_mount, pivot_root) returns:
 * every cached pass before it is void. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} path_gen SEC(".maps");

/* A file mapped executable that match_file passed: the path object (dentry
 * and mount, in the task's root), the file's identity, and the rules it
 * was judged by. Real loads map the same few libraries again and again. */
struct pass_key {
	__u64 dentry;
	__u64 mnt;
	__u64 root_dentry;
	__u64 root_mnt;
	__u64 sb;
	__u64 ino;
	__u64 cgroup;
	__u32 ruleset;
	__u32 pad;
};

/* The generations current before the walk that passed it. */
struct pass_value {
	__u64 path_gen;
	__u64 rules_gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pass_key);
	__type(value, struct pass_value);
} mmap_passes SEC(".maps");

/* read_gens reads the generations a pass must carry to be current; false if
 * they cannot be read (then nothing is cached). Read before a walk, so that
 * a change during it voids its pass. */
static __always_inline bool read_gens(struct pass_value *gen)
{
	__u32 zero = 0;
	__u64 *pg = bpf_map_lookup_elem(&path_gen, &zero);
	struct mmap_config *cfg = bpf_map_lookup_elem(&mmap_config, &zero);

	if (!pg || !cfg)
		return false;
	gen->path_gen = *(volatile __u64 *)pg;
	gen->rules_gen = cfg->rules_gen;
	return true;
}

/* passed_before says whether k passed under the generations in gen. */
static __always_inline bool passed_before(struct pass_key *k, struct pass_value *gen)
{
	struct pass_value *v = bpf_map_lookup_elem(&mmap_passes, k);

	return v && v->path_gen == gen->path_gen && v->rules_gen == gen->rules_gen;
}

#endif
