/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Which registered container a task or packet belongs to. A process that
 * moves into a sub-cgroup of its container (systemd inside it, crun's
 * <scope>/container, a writable cgroupfs) stays under that container's rules:
 * the nearest registered ancestor decides. */
#ifndef HOLDFAST_CGROUP_H
#define HOLDFAST_CGROUP_H

/* Registered cgroups must sit above this level (bpf.MaxCgroupLevel); a
 * workload can nest deeper below its container, and the walk still finds the
 * container because it runs from the root down. */
#define MAX_CGROUP_LEVEL 32

/* A registered cgroup found for the current context. */
struct owner {
	__u64 cgroup_id; /* the registered cgroup (the task's own or an ancestor) */
	struct cgroup_rule *rule;
};

/* owner_try makes the cgroup id o's owner if it is registered; a later
 * (deeper) match replaces an earlier one. */
static __always_inline bool owner_try(struct owner *o, __u64 id)
{
	struct cgroup_rule *r = bpf_map_lookup_elem(&cgroup_rules, &id);

	if (!r)
		return false;
	o->cgroup_id = id;
	o->rule = r;
	return true;
}

/* owner_first starts a search with the exact cgroup id. Both fields are
 * set: clang may store cgroup_id after the walk whether or not anything
 * matched, and the verifier refuses an uninitialised register. */
static __always_inline bool owner_first(struct owner *o, __u64 id)
{
	o->cgroup_id = 0;
	o->rule = NULL;
	return owner_try(o, id);
}

/* Exact match first (the common case: one lookup); otherwise every ancestor
 * from level 1 down to the task's parent cgroup, the deepest match winning.
 * Cost is one lookup per level of the task's cgroup, whatever the number of
 * registered containers. */
static __always_inline bool owner_of_current(struct owner *o)
{
	__u64 id = bpf_get_current_cgroup_id();

	if (owner_first(o, id))
		return true;
	for (int level = 1; level < MAX_CGROUP_LEVEL; level++) {
		__u64 anc = bpf_get_current_ancestor_cgroup_id(level);
		if (anc == 0 || anc == id)
			break;
		owner_try(o, anc);
	}
	return o->rule != NULL;
}

/* The registered cgroup a task last ran under (exec) or inherited (fork):
 * after a task moves itself, its cgroup no longer says where it came from. */
struct task_owner {
	__u64 cgroup_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_owner);
} task_owners SEC(".maps");

static __always_inline void remember_owner(struct task_struct *task, __u64 cgroup_id)
{
	struct task_owner *t = bpf_task_storage_get(&task_owners, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (t && t->cgroup_id != cgroup_id)
		t->cgroup_id = cgroup_id;
}

/* The nearest registered cgroup at or above cg (0: none), from level 1 down
 * as owner_of_current does. Callers check the hierarchy first: cgroup v1
 * hierarchies have IDs of their own. */
static __always_inline __u64 registered_ancestor(struct cgroup *cg)
{
	int level = BPF_CORE_READ(cg, level);
	__u64 base = (__u64)cg + bpf_core_field_offset(struct cgroup, ancestors);
	__u64 found = 0;

	for (int l = 1; l < MAX_CGROUP_LEVEL; l++) {
		struct cgroup *anc = NULL;

		if (l > level)
			break;
		bpf_probe_read_kernel(&anc, sizeof(anc), (void *)(base + (__u64)l * sizeof(anc)));
		if (!anc)
			break;
		__u64 id = BPF_CORE_READ(anc, kn, id);
		if (bpf_map_lookup_elem(&cgroup_rules, &id))
			found = id;
	}
	return found;
}

#endif
