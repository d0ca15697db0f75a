/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Exec control: the executed file's path, resolved as the kernel sees it
 * inside the task's root, against the container's exact and prefix rules. */
#ifndef HOLDFAST_EXEC_H
#define HOLDFAST_EXEC_H

/* State of one exec check, shared by the bpf_loop callbacks. Kernel
 * addresses are kept as integers: they are only ever read through
 * bpf_probe_read_kernel (BPF_CORE_READ). */
struct match_ctx {
	__u64 dentry;
	__u64 mnt; /* struct mount of dentry */
	__u64 root_dentry;
	__u64 root_vfsmnt; /* struct vfsmount of the task's root */
	__u64 hash;
	__u32 depth; /* components seen, leaf first */
	__u32 done;  /* walk ended at a root */
	__u32 ruleset;
	__u32 rule_id;
	__u32 matched;
	__u32 unresolved;
	/* The registered cgroup whose file identities apply (struct owner). */
	__u64 owner_cgroup;
	/* The topmost components seen, by walk index modulo the depth limit:
	 * hashing runs from the root down, and rules never go deeper. */
	__u64 ring[MAX_PATH_DEPTH];
};

/* One step of the upward walk, as the kernel's prepend_path does it: stop at
 * the task's root, cross to the parent mount at a mount's root, stop at the
 * global root or a dentry that is its own parent (pseudo files). */
static long walk_step(__u32 i, struct match_ctx *c)
{
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;
	__u64 vfsmnt = c->mnt + bpf_core_field_offset(struct mount, mnt);

	if (!d || !m)
		return 1;
	if (c->dentry == c->root_dentry && vfsmnt == c->root_vfsmnt) {
		c->done = 1;
		return 1;
	}
	if (d == BPF_CORE_READ(m, mnt.mnt_root)) {
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);

		if (parent && parent != m) {
			c->dentry = (__u64)BPF_CORE_READ(m, mnt_mountpoint);
			c->mnt = (__u64)parent;
			return 0;
		}
		c->done = 1;
		return 1;
	}
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (!parent)
		return 1;
	if (parent == d) {
		c->done = 1;
		return 1;
	}
	c->ring[c->depth & (MAX_PATH_DEPTH - 1)] = c->dentry;
	c->depth++;
	c->dentry = (__u64)parent;
	return 0;
}

static __always_inline bool lookup_exec(struct match_ctx *c, __u32 kind)
{
	struct exec_key key = {
		.ruleset = c->ruleset,
		.kind = kind,
		.hash = c->hash,
	};
	struct exec_value *v = bpf_map_lookup_elem(&exec_rules, &key);

	if (!v)
		return false;
	c->rule_id = v->rule_id;
	c->matched = 1;
	return true;
}

/* Hashes like bpf.PathHash: the component's length, then its bytes as
 * little-endian 64-bit words, the last one zero-padded. */
static __always_inline __u64 hash_component(__u64 h, struct dentry *d)
{
	__u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);

	if (len > MAX_NAME_LEN)
		len = MAX_NAME_LEN;
	h = (h ^ len) * PATH_HASH_PRIME;
	for (__u32 i = 0; i < MAX_NAME_WORDS; i++) {
		__u32 off = i * 8;
		if (off >= len)
			break;
		__u32 size = len - off;
		if (size > 8)
			size = 8;
		__u64 word = 0;
		/* size is 1..8; the mask is there to prove it to the verifier. */
		bpf_probe_read_kernel(&word, ((size - 1) & 7) + 1, name + off);
		h = (h ^ word) * PATH_HASH_PRIME;
	}
	return h;
}

/* Step k hashes component k (the top one was seen last by the walk) and
 * checks the prefix rule for the first k+1 components if the path goes on. */
static long hash_step(__u32 k, struct match_ctx *c)
{
	__u32 idx = (c->depth - 1 - k) & (MAX_PATH_DEPTH - 1);

	c->hash = hash_component(c->hash, (struct dentry *)c->ring[idx]);
	if (k + 1 < c->depth && lookup_exec(c, EXEC_PREFIX))
		return 1;
	return 0;
}

/* Matches file by identity against c->owner_cgroup's resolved files, then
 * resolves its path inside task's root against the ruleset in c.
 * Returns true when it is denied: c->rule_id says by what rule, or
 * c->unresolved that the path was too deep to resolve. Used for the file an
 * exec runs and for files mapped executable. */
static __always_inline bool match_file(struct match_ctx *c, struct file *file, struct task_struct *task)
{
	/* The file itself first: no path trick changes its identity. */
	if (match_identity(c->owner_cgroup, file, &c->rule_id)) {
		c->matched = 1;
		return true;
	}

	__u64 vfsmnt = (__u64)BPF_CORE_READ(file, f_path.mnt);

	c->dentry = (__u64)BPF_CORE_READ(file, f_path.dentry);
	c->mnt = vfsmnt - bpf_core_field_offset(struct mount, mnt);
	c->root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
	c->root_vfsmnt = (__u64)BPF_CORE_READ(task, fs, root.mnt);
	bpf_loop(MAX_WALK, walk_step, c, 0);
	if (!c->done) {
		count(COUNTER_EXEC_UNRESOLVED);
		c->unresolved = 1;
		return true;
	}

	/* "/" covers every exec, also of files without a path (memfd). */
	c->hash = PATH_HASH_SEED;
	if (lookup_exec(c, EXEC_PREFIX))
		return true;
	__u32 n = c->depth < MAX_PATH_DEPTH ? c->depth : MAX_PATH_DEPTH;
	bpf_loop(n, hash_step, c, 0);
	if (c->matched)
		return true;
	/* Paths deeper than any rule had their prefixes checked in the loop. */
	return c->depth <= MAX_PATH_DEPTH && lookup_exec(c, EXEC_EXACT);
}

static __always_inline void emit_exec(struct match_ctx *c, __u64 cgroup_id, struct linux_binprm *bprm,
				      struct task_struct *task, __u32 action)
{
	struct event *ev = event_new(cgroup_id, action, c->ruleset, c->rule_id);
	if (!ev)
		return;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->flags = c->unresolved ? EVENT_UNRESOLVED : 0;
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(ev, 0);
}

/* Fallback mode: the exec has passed the point of no return, so the new
 * image is killed before its first instruction. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_kill, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_EXEC))
		return 0;
	count(COUNTER_EXEC_CHECKED);

	struct match_ctx c = {};
	c.ruleset = o.rule->ruleset;
	c.owner_cgroup = o.cgroup_id;
	if (!match_file(&c, BPF_CORE_READ(bprm, file), p))
		return 0;
	bpf_send_signal(SIGKILL);
	count(COUNTER_EXEC_DENIED);
	emit_exec(&c, o.cgroup_id, bprm, p, ACTION_EXEC_KILLED);
	return 0;
}

/* Preferred mode where BPF LSM programs load: execve fails with EPERM. It
 * runs for every binfmt stage, so a script and its interpreter are both
 * checked. */
SEC("lsm/bprm_check_security")
int BPF_PROG(exec_lsm, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_EXEC))
		return 0;
	count(COUNTER_EXEC_CHECKED);

	struct task_struct *task = bpf_get_current_task_btf();
	struct match_ctx c = {};
	c.ruleset = o.rule->ruleset;
	c.owner_cgroup = o.cgroup_id;
	if (!match_file(&c, BPF_CORE_READ(bprm, file), task))
		return 0;
	count(COUNTER_EXEC_DENIED);
	emit_exec(&c, o.cgroup_id, bprm, task, ACTION_EXEC_DENIED);
	return -EPERM;
}

#endif
