/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Exec control: the executed file's path, resolved as the kernel sees it
 * inside the task's root, against the container's exact and prefix rules. */
#ifndef HOLDFAST_EXEC_H
#define HOLDFAST_EXEC_H

/* SipHash-2-4 (bpf.PathHash) over a stream of 64-bit words: the state is
 * kept per component and a copy finalized per lookup, so every prefix of a
 * path costs one finalization, not a rehash. */
struct sip {
	__u64 v0, v1, v2, v3;
};

#define SIP_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

static __always_inline void sip_round(struct sip *s)
{
	s->v0 += s->v1;
	s->v1 = SIP_ROTL(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = SIP_ROTL(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = SIP_ROTL(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = SIP_ROTL(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = SIP_ROTL(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = SIP_ROTL(s->v2, 32);
}

static __always_inline void sip_init(struct sip *s, const struct hash_key *k)
{
	s->v0 = k->k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k->k1 ^ 0x646f72616e646f6dULL;
	s->v2 = k->k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k->k1 ^ 0x7465646279746573ULL;
}

static __always_inline void sip_word(struct sip *s, __u64 m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

/* The SipHash-2-4 of the words fed so far; s itself is left as it is. */
static __always_inline __u64 sip_final(const struct sip *in, __u32 words)
{
	struct sip s = *in;
	__u64 b = (__u64)((words * 8) & 0xff) << 56;

	s.v3 ^= b;
	sip_round(&s);
	sip_round(&s);
	s.v0 ^= b;
	s.v2 ^= 0xff;
	sip_round(&s);
	sip_round(&s);
	sip_round(&s);
	sip_round(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

/* State of one exec check, shared by the bpf_loop callbacks. Kernel
 * addresses are kept as integers: they are only ever read through
 * bpf_probe_read_kernel (BPF_CORE_READ). */
struct match_ctx {
	__u64 dentry;
	__u64 mnt; /* struct mount of dentry */
	__u64 root_dentry;
	__u64 root_vfsmnt; /* struct vfsmount of the task's root */
	struct sip sip; /* keyed hash state over the components hashed so far */
	__u64 root_hash; /* hash of no components: the "/" prefix */
	__u32 words;     /* 64-bit words fed to sip */
	__u32 depth; /* components seen, leaf first */
	__u32 ruleset;
	__u32 rule_id;
	/* The registered cgroup whose file identities apply (struct owner). */
	__u64 owner_cgroup;
	/* Flags are bytes: with the ring, this state only just fits the stack
	 * of the mmap checks. */
	__u8 done; /* walk ended at a root */
	__u8 matched;
	__u8 unresolved;
	__u8 not_allowed;
	/* The topmost components seen, by walk index modulo the depth limit:
	 * hashing runs from the root down, and rules never go deeper. Once a
	 * component is hashed its slot holds the hash of the path down to and
	 * including it, so the allow check needs no second hashing pass. */
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

static __always_inline bool lookup_exec(struct match_ctx *c, __u32 kind, __u64 hash)
{
	struct exec_key key = {
		.ruleset = c->ruleset,
		.kind = kind,
		.hash = hash,
	};
	struct exec_value *v = bpf_map_lookup_elem(&exec_rules, &key);

	if (!v)
		return false;
	c->rule_id = v->rule_id;
	c->matched = 1;
	return true;
}

/* Feeds one component like bpf.PathHash: its length, then its bytes as
 * little-endian 64-bit words, the last one zero-padded. */
static __always_inline void hash_component(struct match_ctx *c, struct dentry *d)
{
	__u32 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);

	if (len > MAX_NAME_LEN)
		len = MAX_NAME_LEN;
	sip_word(&c->sip, len);
	c->words++;
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
		sip_word(&c->sip, word);
		c->words++;
	}
}

/* Step k hashes component k (the top one was seen last by the walk), leaves
 * the hash of the path down to it in its ring slot, and checks the prefix
 * rule for the first k+1 components if the path goes on. */
static long hash_step(__u32 k, struct match_ctx *c)
{
	__u32 idx = (c->depth - 1 - k) & (MAX_PATH_DEPTH - 1);

	hash_component(c, (struct dentry *)c->ring[idx]);
	c->ring[idx] = sip_final(&c->sip, c->words);
	if (k + 1 < c->depth && lookup_exec(c, EXEC_PREFIX, c->ring[idx]))
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

	__u32 zero = 0;
	struct hash_key *key = bpf_map_lookup_elem(&exec_hash_key, &zero);
	if (!key) {
		c->unresolved = 1; /* cannot happen (array); refuse rather than guess */
		return true;
	}
	sip_init(&c->sip, key);
	c->root_hash = sip_final(&c->sip, 0);

	/* "/" covers every exec, also of files without a path (memfd). */
	if (lookup_exec(c, EXEC_PREFIX, c->root_hash))
		return true;
	__u32 n = c->depth < MAX_PATH_DEPTH ? c->depth : MAX_PATH_DEPTH;
	bpf_loop(n, hash_step, c, 0);
	if (c->matched)
		return true;
	/* Paths deeper than any rule had their prefixes checked in the loop. */
	/* Slot 0 holds the leaf, hashed last: the whole path. */
	return c->depth <= MAX_PATH_DEPTH && lookup_exec(c, EXEC_EXACT, c->depth ? c->ring[0] : c->root_hash);
}

static __always_inline bool lookup_allow(struct match_ctx *c, __u64 hash, __u32 kind)
{
	struct exec_key key = {
		.ruleset = c->ruleset,
		.kind = kind,
		.hash = hash,
	};
	return bpf_map_lookup_elem(&exec_rules, &key) != NULL;
}

/* The allow decision, kept apart from match_file (which only denies and
 * also serves mapped files): called by the exec programs once match_file
 * found the file not denied, it reads the prefix hashes match_file left in
 * c->ring. A file is allowed when "/", a directory above it or its own
 * path is on the list; a file without a path (memfd) only under "/". */
static __always_inline bool exec_allowed(struct match_ctx *c)
{
	if (lookup_allow(c, c->root_hash, EXEC_ALLOW_PREFIX))
		return true;
	__u32 n = c->depth < MAX_PATH_DEPTH ? c->depth : MAX_PATH_DEPTH;
	for (__u32 k = 0; k < MAX_PATH_DEPTH; k++) {
		if (k >= n)
			break;
		__u64 h = c->ring[(c->depth - 1 - k) & (MAX_PATH_DEPTH - 1)];
		/* Paths deeper than the ring were cut to their top components,
		 * which are all prefixes; k + 1 == depth is the whole path. */
		if (k + 1 < c->depth) {
			if (lookup_allow(c, h, EXEC_ALLOW_PREFIX))
				return true;
		} else if (lookup_allow(c, h, EXEC_ALLOW_EXACT)) {
			return true;
		}
	}
	return false;
}

/* Whether the exec of file is refused: denied by a rule (or unresolvable),
 * or, with an allow list, not on it (c->not_allowed). */
static __always_inline bool exec_refused(struct match_ctx *c, __u32 flags, struct file *file, struct task_struct *task)
{
	if (match_file(c, file, task))
		return true;
	/* On the list by identity (an exact rule resolved in the container's
	 * root, like /bin/sh -> /usr/bin/dash) or by path. */
	if (!(flags & CG_EXEC_ALLOW) || allowed_identity(c->owner_cgroup, file) || exec_allowed(c))
		return false;
	c->not_allowed = 1;
	return true;
}

static __always_inline void emit_exec(struct match_ctx *c, __u64 cgroup_id, struct linux_binprm *bprm,
				      struct task_struct *task, __u32 action)
{
	struct event *ev = event_new(cgroup_id, action, c->ruleset, c->rule_id);
	if (!ev)
		return;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->flags = (c->unresolved ? EVENT_UNRESOLVED : 0) | (c->not_allowed ? EVENT_NOT_ALLOWED : 0);
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
	if (!exec_refused(&c, o.rule->flags, BPF_CORE_READ(bprm, file), p))
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
	if (!exec_refused(&c, o.rule->flags, BPF_CORE_READ(bprm, file), task))
		return 0;
	count(COUNTER_EXEC_DENIED);
	emit_exec(&c, o.cgroup_id, bprm, task, ACTION_EXEC_DENIED);
	return -EPERM;
}

#endif
