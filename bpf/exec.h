/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Exec control: the executed file's path, resolved as the kernel sees it
 * from the root of its mount namespace, and its identity and its directories'
 * identities, against the container's exact and prefix rules. */
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
	/* A match by a rule in audit mode (the last one seen): the walk goes
	 * on, since an enforcing rule that also matches must decide (fits the
	 * padding). */
	__u32 audit_rule;
	__u8 lineage; /* ancestor classes of the process (process.h) */
	/* The topmost components seen, by walk index modulo the depth limit:
	 * hashing runs from the root down, and rules never go deeper. Once a
	 * component is hashed its slot holds the hash of the path down to and
	 * including it, so the allow check needs no second hashing pass. */
	__u64 ring[MAX_PATH_DEPTH];
};

/* One step of the upward walk, as the kernel's prepend_path does it for an
 * absolute path: cross to the parent mount at a mount's root, stop at the
 * root of the mount tree (the mount namespace's root mount, whose parent is
 * itself; or a detached mount's root) or at a dentry that is its own parent
 * (pseudo files). The task's chroot does not end it: a path is the same for
 * every task of the container, chrooted or not (containers pivot_root, so
 * the rootfs is the namespace's root and their paths do not change). */
static long walk_step(__u32 i, struct match_ctx *c)
{
	struct dentry *d = (struct dentry *)c->dentry;
	struct mount *m = (struct mount *)c->mnt;

	if (!d || !m)
		return 1;
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

/* The upward walk over a file's directories within its file system
 * (d_parent, mounts ignored): a directory-prefix rule's directory, resolved
 * by the engine in the container's root, denies everything below it however
 * it is reached (bind mount, chroot, a private mount namespace). */
struct dir_walk {
	__u64 dentry;
	__u64 owner_cgroup;
	__u32 dev;
	__u32 rule_id;
	__u8 done;
	__u8 matched;
	__u8 pad[6];
};

static long dir_step(__u32 i, struct dir_walk *w)
{
	struct dentry *d = (struct dentry *)w->dentry;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);

	if (!parent || parent == d) {
		w->done = 1;
		return 1;
	}
	struct file_key key = {
		.cgroup_id = w->owner_cgroup,
		.ino = BPF_CORE_READ(parent, d_inode, i_ino),
		.dev = w->dev,
		.kind = FILE_KIND_DIR,
	};
	struct file_value *v = bpf_map_lookup_elem(&file_rules, &key);

	if (v) {
		w->rule_id = v->rule_id;
		w->matched = 1;
		return 1;
	}
	w->dentry = (__u64)parent;
	return 0;
}

enum {
	DIRS_PASS = 0,
	DIRS_DENIED,
	DIRS_UNRESOLVED, /* deeper than MAX_WALK */
};

/* Whether a directory above dentry is denied in owner's container. A global
 * function with a context of its own: the verifier checks it once, and
 * the callers' match state does not multiply its states. */
__noinline int dirs_denied(__u64 owner_cgroup, __u32 ruleset, __u64 dentry, __u32 *rule_id)
{
	struct ruleset_info *info = bpf_map_lookup_elem(&rulesets, &ruleset);
	struct dir_walk w = {};

	if (!rule_id || !info || !(info->flags & CG_EXEC_DIRS) || !owner_cgroup)
		return DIRS_PASS;
	w.dentry = dentry;
	w.owner_cgroup = owner_cgroup;
	w.dev = BPF_CORE_READ((struct dentry *)dentry, d_sb, s_dev);
	bpf_loop(MAX_WALK, dir_step, &w, 0);
	if (w.matched) {
		*rule_id = w.rule_id;
		return DIRS_DENIED;
	}
	return w.done ? DIRS_PASS : DIRS_UNRESOLVED;
}

/* audited() as a global function: the verifier checks it once, and each of
 * the many paths through the hashing loop pays a call, not a lookup. */
__noinline int rule_audited(__u32 ruleset, __u32 rule_id)
{
	return audited(ruleset, rule_id);
}

/* take_rule records a matching rule: it decides the walk, unless it is in
 * audit mode, when the walk goes on (an enforcing rule may match too). */
static __always_inline bool take_rule(struct match_ctx *c, __u32 rule_id)
{
	if (rule_audited(c->ruleset, rule_id)) {
		c->audit_rule = rule_id;
		return false;
	}
	c->rule_id = rule_id;
	c->matched = 1;
	return true;
}

static __always_inline bool lookup_exec(struct match_ctx *c, __u32 kind, __u64 hash)
{
	struct exec_key key = {
		.ruleset = c->ruleset,
		.kind = kind,
		.hash = hash,
	};
	struct exec_value *v = bpf_map_lookup_elem(&exec_rules, &key);

	return v && take_rule(c, v->rule_id);
}

/* audit_match ends a walk no enforcing rule matched: denied by an
 * audit-mode rule that did, if any (the callers record it and let it go). */
static __always_inline bool audit_match(struct match_ctx *c)
{
	if (!c->audit_rule)
		return false;
	c->rule_id = c->audit_rule;
	c->matched = 1;
	return true;
}

/* A rule scoped to ancestors (its own kinds) that applies to the process
 * in c. Only the exec checks call it: the mapping checks' code stays as it
 * was, and with it the verifier's cost of mmap_kill. */
static __always_inline bool lookup_scoped(struct match_ctx *c, __u32 kind, __u64 hash)
{
	struct exec_key key = {
		.ruleset = c->ruleset,
		.kind = kind + EXEC_SCOPED,
		.hash = hash,
	};
	struct exec_value *v = c->lineage ? bpf_map_lookup_elem(&exec_rules, &key) : NULL;

	return v && (v->from & c->lineage) && take_rule(c, v->rule_id);
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

/* hash_step of the exec checks: prefix rules scoped to ancestors too. */
static long hash_step_scoped(__u32 k, struct match_ctx *c)
{
	__u32 idx = (c->depth - 1 - k) & (MAX_PATH_DEPTH - 1);

	hash_component(c, (struct dentry *)c->ring[idx]);
	c->ring[idx] = sip_final(&c->sip, c->words);
	if (k + 1 < c->depth && (lookup_exec(c, EXEC_PREFIX, c->ring[idx]) || lookup_scoped(c, EXEC_PREFIX, c->ring[idx])))
		return 1;
	return 0;
}

/* Matches a file (its path object and inode) by identity against
 * c->owner_cgroup's resolved files and directories, then resolves its path
 * from the root of its mount tree against the ruleset in c. Returns true
 * when it is denied: c->rule_id says by what rule, or c->unresolved that
 * the path was too deep to resolve. Used for the file an exec runs, the
 * file mapped at its entry point, and files mapped executable. */
static __always_inline bool match_path(struct match_ctx *c, struct dentry *dentry, struct vfsmount *vfsmnt,
				       struct inode *inode, bool scoped)
{
	/* The file itself first: no path trick changes its identity. */
	if (match_identity(c->owner_cgroup, inode, &c->rule_id)) {
		if (!rule_audited(c->ruleset, c->rule_id)) {
			c->matched = 1;
			return true;
		}
		c->audit_rule = c->rule_id;
		c->rule_id = 0;
	}
	c->dentry = (__u64)dentry;
	c->mnt = (__u64)vfsmnt - bpf_core_field_offset(struct mount, mnt);
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
	if (lookup_exec(c, EXEC_PREFIX, c->root_hash) || (scoped && lookup_scoped(c, EXEC_PREFIX, c->root_hash)))
		return true;
	__u32 n = c->depth < MAX_PATH_DEPTH ? c->depth : MAX_PATH_DEPTH;
	bpf_loop(n, scoped ? hash_step_scoped : hash_step, c, 0);
	if (c->matched)
		return true;
	/* Paths deeper than any rule had their prefixes checked in the loop. */
	/* Slot 0 holds the leaf, hashed last: the whole path. */
	if (c->depth <= MAX_PATH_DEPTH) {
		__u64 whole = c->depth ? c->ring[0] : c->root_hash;

		if (lookup_exec(c, EXEC_EXACT, whole) || (scoped && lookup_scoped(c, EXEC_EXACT, whole)))
			return true;
	}

	/* Last, the directories above it (where the ruleset has prefix rules). */
	switch (dirs_denied(c->owner_cgroup, c->ruleset, (__u64)dentry, &c->rule_id)) {
	case DIRS_PASS:
		return audit_match(c);
	case DIRS_DENIED:
		if (rule_audited(c->ruleset, c->rule_id)) {
			c->audit_rule = c->rule_id;
			c->rule_id = 0;
			return audit_match(c);
		}
		c->matched = 1;
		return true;
	}
	count(COUNTER_EXEC_UNRESOLVED);
	c->unresolved = 1;
	return true;
}

/* match_path for an open file. task is not needed (paths no longer end at
 * its root); the mapping checks pass it. */
static __always_inline bool match_file(struct match_ctx *c, struct file *file, struct task_struct *task)
{
	(void)task;
	return match_path(c, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt),
			  BPF_CORE_READ(file, f_inode), false);
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

/* One exec decision and its outcome. The match state lives in judge()'s
 * own frame: exec_kill judges two files, and two match states do not fit
 * the 512-byte stack of one call chain. */
struct exec_req {
	__u64 owner_cgroup;
	__u64 dentry;
	__u64 vfsmnt;
	__u64 inode;
	__u32 ruleset;
	__u32 flags; /* cgroup_rule flags; CG_EXEC_ALLOW applies the allow list */
	__u32 rule_id;
	__u8 unresolved;
	__u8 not_allowed;
	__u8 lineage; /* in: ancestor classes of the process (process.h) */
	__u8 pad;
	/* out: the hash of the file's whole path when it was resolved and
	 * not refused (0: none), for its ancestor class. */
	__u64 path_hash;
};

/* Whether the file in r is refused: denied by a rule (or unresolvable), or,
 * with an allow list, not on it (r->not_allowed). A global function: the
 * verifier checks it once, not once per call and caller state. */
__noinline int judge(struct exec_req *r)
{
	struct match_ctx c = {};
	int refused;

	if (!r)
		return 1;
	c.ruleset = r->ruleset;
	c.owner_cgroup = r->owner_cgroup;
	c.lineage = r->lineage;
	refused = match_path(&c, (struct dentry *)r->dentry, (struct vfsmount *)r->vfsmnt, (struct inode *)r->inode, true);
	/* A rule in audit mode denied it: an enforcing allow list still
	 * decides (the path was walked in full, so the ring is hashed). */
	bool by_audited = refused && !c.unresolved && rule_audited(c.ruleset, c.rule_id);
	/* On the allow list by identity (an exact rule resolved in the
	 * container's root, like /bin/sh -> /usr/bin/dash) or by path. */
	if ((!refused || by_audited) && (r->flags & CG_EXEC_ALLOW) &&
	    !allowed_identity(r->owner_cgroup, (struct inode *)r->inode) && !exec_allowed(&c) &&
	    (!refused || !rule_audited(c.ruleset, AUDIT_NOT_ALLOWED))) {
		c.not_allowed = 1;
		c.rule_id = 0;
		refused = 1;
	}
	r->rule_id = c.rule_id;
	r->unresolved = c.unresolved;
	r->not_allowed = c.not_allowed;
	r->path_hash = 0;
	if (!refused && c.done && c.depth <= MAX_PATH_DEPTH)
		r->path_hash = c.depth ? c.ring[0] : c.root_hash;
	return refused;
}

static __always_inline void req_file(struct exec_req *r, struct file *file)
{
	r->dentry = (__u64)BPF_CORE_READ(file, f_path.dentry);
	r->vfsmnt = (__u64)BPF_CORE_READ(file, f_path.mnt);
	r->inode = (__u64)BPF_CORE_READ(file, f_inode);
}

/* Attempts at the address space lock (bpf_find_vma only try-locks). */
#define ENTRY_VMA_TRIES 64
#define ERR_BUSY 16 /* EBUSY */

/* The mapping at the new image's first instruction. */
struct entry_find {
	__u64 ip;
	__u64 file;
	__s64 err;
	__u8 done;
	__u8 pad[7];
};

static long entry_vma(struct task_struct *task, struct vm_area_struct *vma, struct entry_find *f)
{
	f->file = (__u64)vma->vm_file;
	return 0;
}

static long entry_step(__u32 i, struct entry_find *f)
{
	long err = bpf_find_vma(bpf_get_current_task_btf(), f->ip, entry_vma, f, 0);

	if (err == -ERR_BUSY)
		return 0; /* another thread holds the lock: try again */
	f->err = err;
	f->done = 1;
	return 1;
}

/* The file the new image starts in, when it is not the exec'd file: the ELF
 * interpreter (PT_INTERP), which binfmt_elf maps inside execve, with no mmap
 * system call for the mapping checks to see. It is judged by the deny rules
 * only: ld.so is rarely on an allow list, and an executable naming another
 * interpreter is itself a file the allow list has to admit. A start address
 * in no mapping is refused. */
static __always_inline int judge_entry(struct exec_req *r, struct file *exe)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	struct entry_find f = {};

	f.ip = BPF_CORE_READ(regs, ip);
	bpf_loop(ENTRY_VMA_TRIES, entry_step, &f, 0);
	if (!f.done || f.err) {
		count(COUNTER_EXEC_UNRESOLVED);
		r->rule_id = 0;
		r->unresolved = 1;
		r->not_allowed = 0;
		return 1;
	}
	if (!f.file)
		return 0; /* anonymous memory or the vDSO: no file runs */
	struct dentry *d;
	struct vfsmount *m;
	struct inode *inode;

	opened_path((struct file *)f.file, &d, &m, &inode);
	if (d == BPF_CORE_READ(exe, f_path.dentry) && m == BPF_CORE_READ(exe, f_path.mnt))
		return 0; /* the exec'd file itself, judged already */
	r->dentry = (__u64)d;
	r->vfsmnt = (__u64)m;
	r->inode = (__u64)inode;
	r->flags &= ~CG_EXEC_ALLOW;

	/* The same deny decision as a mapping's (passes.h): ld.so passes once
	 * per container and ruleset, not on every exec. */
	struct pass_key k = {
		.dentry = (__u64)d,
		.mnt = (__u64)m,
		.root_dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry),
		.root_mnt = (__u64)BPF_CORE_READ(task, fs, root.mnt),
		.sb = (__u64)BPF_CORE_READ(inode, i_sb),
		.ino = BPF_CORE_READ(inode, i_ino),
		.cgroup = r->owner_cgroup,
		.ruleset = r->ruleset,
	};
	struct pass_value gen;
	bool cacheable = read_gens(&gen);

	if (cacheable && passed_before(&k, &gen))
		return 0;
	int refused = judge(r);
	if (!refused && cacheable)
		bpf_map_update_elem(&mmap_passes, &k, &gen, BPF_ANY);
	return refused;
}

static __always_inline void emit_exec(struct exec_req *r, struct linux_binprm *bprm, struct task_struct *task,
				      __u32 action)
{
	struct event *ev = event_new(r->owner_cgroup, action, r->ruleset, r->rule_id);
	if (!ev)
		return;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->flags = (r->unresolved ? EVENT_UNRESOLVED : 0) | (r->not_allowed ? EVENT_NOT_ALLOWED : 0);
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(ev, 0);
}

/* exec_audited says whether the refusal judge() made is by a rule in audit
 * mode; then it records the wouldDeny event, and the exec goes ahead. */
static __always_inline bool exec_audited(struct exec_req *r, struct linux_binprm *bprm, struct task_struct *task,
					 __u32 action)
{
	if (!audited(r->ruleset, r->not_allowed ? AUDIT_NOT_ALLOWED : r->rule_id))
		return false;
	count(COUNTER_AUDITED);
	emit_exec(r, bprm, task, action | ACTION_AUDITED);
	return true;
}

/* exec_req_start records which registered container task belongs to and,
 * when its ruleset checks exec, fills r for judging the exec'd file; false:
 * nothing to judge. */
static __always_inline bool exec_req_start(struct exec_req *r, struct task_struct *task, struct linux_binprm *bprm)
{
	struct owner o;

	if (!owner_of_current(&o))
		return false;
	remember_owner(task, o.cgroup_id);
	if (!(o.rule->flags & (CG_EXEC | CG_ANCESTRY)))
		return false;
	count(COUNTER_EXEC_CHECKED);
	r->owner_cgroup = o.cgroup_id;
	r->ruleset = o.rule->ruleset;
	r->flags = o.rule->flags;
	if (r->flags & CG_ANCESTRY)
		r->lineage = exec_lineage(task, o.cgroup_id);
	req_file(r, BPF_CORE_READ(bprm, file));
	return true;
}

/* Fallback mode: the exec has passed the point of no return, so the new
 * image is killed before its first instruction: the exec'd file, and the
 * file at its start address (its ELF interpreter) if that is another. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_kill, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct exec_req r = {};

	if (!exec_req_start(&r, p, bprm))
		return 0;
	struct file *exe = BPF_CORE_READ(bprm, file);
	/* The interpreter is judged also when an audited rule passed the
	 * exec'd file: an enforcing rule may still deny it. */
	bool denied = judge(&r) && !exec_audited(&r, bprm, p, ACTION_EXEC_KILLED);
	__u64 hash = r.path_hash;

	if (!denied)
		denied = judge_entry(&r, exe) && !exec_audited(&r, bprm, p, ACTION_EXEC_KILLED);
	if (!denied) {
		if (r.flags & CG_ANCESTRY)
			note_exec_class(BPF_CORE_READ(p, tgid), r.ruleset, hash);
		return 0;
	}
	bpf_send_signal(SIGKILL);
	count(COUNTER_EXEC_DENIED);
	emit_exec(&r, bprm, p, ACTION_EXEC_KILLED);
	return 0;
}

/* Preferred mode where BPF LSM programs load: execve fails with EPERM. It
 * runs for every binfmt stage, so a script and its interpreter are both
 * checked; an ELF interpreter is mapped through vm_mmap inside execve,
 * which lsm/mmap_file (mmap.h) judges. */
SEC("lsm/bprm_check_security")
int BPF_PROG(exec_lsm, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	struct task_struct *task = bpf_get_current_task_btf();
	struct exec_req r = {};

	if (!exec_req_start(&r, task, bprm))
		return 0;
	if (!judge(&r) || exec_audited(&r, bprm, task, ACTION_EXEC_DENIED)) {
		/* Every binfmt stage passes here; the last one (the binary
		 * that runs) sets the class. */
		if (r.flags & CG_ANCESTRY)
			note_exec_class(BPF_CORE_READ(task, tgid), r.ruleset, r.path_hash);
		return 0;
	}
	count(COUNTER_EXEC_DENIED);
	emit_exec(&r, bprm, task, ACTION_EXEC_DENIED);
	return -EPERM;
}

/* Leaving the container's cgroup. A task of a registered container that can
 * write a cgroup.procs above its own (CAP_SYS_ADMIN and the host's cgroup
 * namespace), or clone3 into such a cgroup (CLONE_INTO_CGROUP), would run
 * under no rules or another container's. When the mover is a task of a
 * registered container and the destination's nearest registered cgroup is
 * not that container, the moved task is killed. Runtimes move tasks from
 * outside any container and are not affected. */

#define PF_IO_WORKER 0x00000010

/* The container the current task (the mover) belongs to: where it last
 * exec'd or was forked, since a task that moved itself is already in the
 * destination; else, for a task that did neither since the programs were
 * loaded, its cgroup. An io_uring worker is made without a fork the
 * programs see: it speaks for its process, whose leader's record counts. */
static __always_inline __u64 mover_owner(void)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct task_owner *t;

	if (cur->flags & PF_IO_WORKER)
		t = bpf_task_storage_get(&task_owners, cur->group_leader, 0, 0);
	else
		t = bpf_task_storage_get(&task_owners, cur, 0, 0);

	if (t && t->cgroup_id && bpf_map_lookup_elem(&cgroup_rules, &t->cgroup_id))
		return t->cgroup_id;
	struct owner o;

	return owner_of_current(&o) ? o.cgroup_id : 0;
}

static __always_inline void judge_move(struct task_struct *task, struct cgroup *dst, const char *path)
{
	__u64 to = registered_ancestor(dst);
	__u64 from = mover_owner();

	if (!from || from == to) {
		/* An allowed move (by a runtime, or within the container) is
		 * where the task now belongs. */
		struct task_owner *t = bpf_task_storage_get(&task_owners, task, 0, 0);
		if (t)
			t->cgroup_id = to;
		return;
	}
	/* Kernels before 6.13 have no way to signal another task from here. */
	if (!bpf_ksym_exists(bpf_send_signal_task))
		return;
	bpf_send_signal_task(task, SIGKILL, PIDTYPE_TGID, 0);
	struct cgroup_rule *rule = bpf_map_lookup_elem(&cgroup_rules, &from);
	struct event *ev = event_new(from, ACTION_MOVE_KILLED, rule ? rule->ruleset : 0, 0);
	if (!ev)
		return;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	if (path)
		bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), path);
	bpf_ringbuf_submit(ev, 0);
}

/* After a write to cgroup.procs or cgroup.threads moved task into dst. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(cgroup_move, struct cgroup *dst, const char *path, struct task_struct *task, bool threadgroup)
{
	if (BPF_CORE_READ(dst, root, hierarchy_id) != 0)
		return 0; /* a cgroup v1 hierarchy: rules follow the v2 cgroup */
	judge_move(task, dst, path);
	return 0;
}

/* Before a new task first runs: it inherits where its parent belongs, and
 * a task cloned into another cgroup (CLONE_INTO_CGROUP) is judged as a move.
 * Every fork pays one task storage lookup and a pointer comparison. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(cgroup_fork, struct task_struct *parent, struct task_struct *child)
{
	struct task_owner *t = bpf_task_storage_get(&task_owners, parent, 0, 0);

	if (t && t->cgroup_id) {
		__u64 id = t->cgroup_id;
		struct task_owner *c = bpf_task_storage_get(&task_owners, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (c)
			c->cgroup_id = id;
	}
	struct cgroup *to = BPF_CORE_READ(child, cgroups, dfl_cgrp);

	if (to != BPF_CORE_READ(parent, cgroups, dfl_cgrp))
		judge_move(child, to, NULL);
	return 0;
}

#endif
