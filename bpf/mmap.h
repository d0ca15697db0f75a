/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* The loader route: a denied file must not run when it is mapped executable
 * rather than exec'd (ld.so run as a program, dlopen, mprotect of a read-only
 * mapping). The same match_file() decision as exec applies to the file.
 *
 * kill mode: the syscall tracepoints (syscalls/sys_enter_mmap, ...) ignore
 * 32-bit compat syscalls on x86-64, so the raw sys_enter/sys_exit
 * tracepoints are used, with the syscall number filtered first. Entry checks
 * the file behind the fd (mmap) or the mappings in the range (mprotect)
 * before the syscall runs; exit checks the mappings the syscall actually
 * made executable, which closes the race of swapping the fd or the mapping
 * between the two. SIGKILL is delivered before the thread returns to user
 * space, so the mapping is never executed by it. x86-64 only.
 *
 * overlayfs (every container root) maps the layer's file, not the overlay's:
 * it is judged by the path the task opened (backing_file.user_path). Passes
 * are cached so that a process loading its libraries does not pay a path
 * walk per mapping, twice; see deny_file for what voids them. */
#ifndef HOLDFAST_MMAP_H
#define HOLDFAST_MMAP_H

#define EBUSY 16
#define PROT_READ 0x1
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
#define VM_EXEC 0x4
#define READ_IMPLIES_EXEC 0x0400000
#define TS_COMPAT 0x0002 /* x86 thread_info.status: a 32-bit syscall is running */

/* x86-64 syscall numbers */
#define NR_MMAP 9
#define NR_MPROTECT 10
#define NR_PKEY_MPROTECT 329
/* ia32 syscall numbers (int 0x80, sysenter, syscall from compat mode) */
#define NR32_OLD_MMAP 90
#define NR32_MPROTECT 125
#define NR32_MMAP2 192
#define NR32_PKEY_MPROTECT 380

/* Mappings one mprotect range may span before it counts as unresolvable,
 * and attempts at the address space lock (bpf_find_vma only try-locks). */
#define MAX_VMAS 1024
#define FIND_VMA_TRIES 256

enum map_call {
	CALL_NONE = 0,
	CALL_MMAP,
	CALL_MPROTECT,
};

/* One call's arguments, from pt_regs by ABI. */
struct map_args {
	__u64 addr;
	__u64 len;
	__u64 prot;
	__u64 flags;
	__s64 fd;
};

/* ia32 old_mmap passes its arguments in user memory. */
struct mmap_arg_struct32 {
	__u32 addr;
	__u32 len;
	__u32 prot;
	__u32 flags;
	__u32 fd;
	__u32 offset;
};

/* decode_call returns which kind of call this is, or CALL_NONE for every
 * syscall that cannot map a file executable. The number test comes first:
 * it is all that most syscalls of most processes pay. */
static __always_inline enum map_call decode_call(struct pt_regs *regs, long id, struct map_args *a, bool *unreadable)
{
	switch (id) {
	case NR_MMAP:
	case NR_MPROTECT:
	case NR_PKEY_MPROTECT:
	case NR32_OLD_MMAP:
	case NR32_MPROTECT:
	case NR32_MMAP2:
	case NR32_PKEY_MPROTECT:
		break;
	default:
		return CALL_NONE;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	bool compat = task->thread_info.status & TS_COMPAT;
	enum map_call call = CALL_NONE;

	if (!compat) {
		a->addr = regs->di;
		a->len = regs->si;
		a->prot = regs->dx;
		a->flags = regs->r10;
		a->fd = (__s64)regs->r8;
		if (id == NR_MMAP)
			call = CALL_MMAP;
		else if (id == NR_MPROTECT || id == NR_PKEY_MPROTECT)
			call = CALL_MPROTECT;
	} else {
		a->addr = (__u32)regs->bx;
		a->len = (__u32)regs->cx;
		a->prot = (__u32)regs->dx;
		a->flags = (__u32)regs->si;
		a->fd = (__s32)regs->di;
		if (id == NR32_MMAP2) {
			call = CALL_MMAP;
		} else if (id == NR32_MPROTECT || id == NR32_PKEY_MPROTECT) {
			call = CALL_MPROTECT;
		} else if (id == NR32_OLD_MMAP) {
			struct mmap_arg_struct32 u;

			call = CALL_MMAP;
			if (bpf_probe_read_user(&u, sizeof(u), (void *)regs->bx)) {
				/* Not resident: the kernel will fault it in, we
				 * cannot; refused unless it is plainly anonymous. */
				*unreadable = true;
				a->prot = PROT_EXEC;
				a->flags = 0;
				return call;
			}
			a->addr = u.addr;
			a->len = u.len;
			a->prot = u.prot;
			a->flags = u.flags;
			a->fd = (__s32)u.fd;
		}
	}
	if (call == CALL_NONE)
		return call;
	/* The kernel adds PROT_EXEC to readable mappings of such tasks. */
	if ((a->prot & PROT_READ) && (task->personality & READ_IMPLIES_EXEC))
		a->prot |= PROT_EXEC;
	if (!(a->prot & PROT_EXEC))
		return CALL_NONE;
	if (call == CALL_MMAP && (a->flags & MAP_ANONYMOUS))
		return CALL_NONE;
	return call;
}

/* The file open as fd in the current task, or NULL. */
static __always_inline struct file *file_of_fd(struct task_struct *task, __s64 fd)
{
	/* Direct (BTF) loads: far cheaper than bpf_probe_read_kernel calls. */
	struct fdtable *fdt = task->files->fdt;

	if (!fdt || fd < 0 || fd >= fdt->max_fds)
		return NULL;
	struct file **fds = fdt->fd;
	struct file *file = NULL;

	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}


/* Room for a struct file (its f_path and f_inode are filled in). */
#define VIEW_SIZE 256

/* Per task, between the entry and the exit of one mapping call. */
struct mmap_task {
	/* The last file the entry check passed (valid): the exit check of the
	 * same call need not look it up again. */
	struct pass_key passed;
	__u32 valid;
	__u32 pad;
	/* Scratch of one check, kept off the programs' stack. */
	struct pass_key key;
	struct pass_value gen;
	__u32 cache; /* key missed in mmap_passes: cache the pass */
	__u32 pad2;
	/* A struct file standing for the mapped file as the task opened it,
	 * for match_file (which reads it with bpf_probe_read_kernel). */
	__u8 view[VIEW_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct mmap_task);
} mmap_tasks SEC(".maps");

/* Which check runs: at exit, the entry check's pass may be reused; in lsm
 * mode, nothing voids cached passes (renames and mounts bump path_gen in
 * kill mode's sys_exit program), so none are used. */
enum {
	STAGE_ENTRY = 0,
	STAGE_EXIT,
	STAGE_LSM,
};

/* State of one range check, shared by the bpf_loop and bpf_find_vma
 * callbacks. */
struct vma_scan {
	__u64 owner_cgroup; /* the registered cgroup whose rules apply */
	__u32 ruleset;
	__u32 rule_id; /* of the rule that denied, for the event */
	__u64 cursor;
	__u64 end;
	__u64 found_file;
	__u64 found_end;
	__u64 denied_dentry;
	__u8 unresolved; /* refused without a rule: could not be judged */
	__u8 found_exec;
	__u8 only_exec; /* skip mappings that are not executable */
	__u8 stage;	/* STAGE_* */
	__u8 done;
	__u8 denied;
};

static long vma_found(struct task_struct *task, struct vm_area_struct *vma, struct vma_scan *s)
{
	s->found_file = (__u64)vma->vm_file;
	s->found_end = vma->vm_end;
	s->found_exec = !!(vma->vm_flags & VM_EXEC);
	return 0;
}

static __always_inline void view_put(struct mmap_task *t, __u32 off, __u64 v)
{
	if (off <= VIEW_SIZE - sizeof(__u64))
		*(__u64 *)&t->view[off] = v;
}

/* view_of writes into t->view a struct file that stands for file as the
 * task opened it (opened_path), and into t->key its path and identity.
 * match_file always gets the view: one pointer
 * type keeps its verification to one pass per call site. The view holds
 * f_path and f_inode, which is all match_file reads of a file. */
static __always_inline bool view_of(struct file *file, struct mmap_task *t)
{
	struct dentry *d;
	struct vfsmount *m;
	struct inode *inode;

	opened_path(file, &d, &m, &inode);
	if (bpf_core_type_size(struct file) > VIEW_SIZE)
		return false;
	__u32 fpath = bpf_core_field_offset(struct file, f_path);

	view_put(t, fpath + bpf_core_field_offset(struct path, dentry), (__u64)d);
	view_put(t, fpath + bpf_core_field_offset(struct path, mnt), (__u64)m);
	view_put(t, bpf_core_field_offset(struct file, f_inode), (__u64)inode);
	t->key.dentry = (__u64)d;
	t->key.mnt = (__u64)m;
	t->key.sb = (__u64)BPF_CORE_READ(inode, i_sb);
	t->key.ino = BPF_CORE_READ(inode, i_ino);
	return true;
}

static __always_inline bool same_key(const struct pass_key *a, const struct pass_key *b)
{
	return a->dentry == b->dentry && a->mnt == b->mnt && a->root_dentry == b->root_dentry &&
	       a->root_mnt == b->root_mnt && a->sb == b->sb && a->ino == b->ino && a->cgroup == b->cgroup &&
	       a->ruleset == b->ruleset;
}

/* mapping_audited records a mapping denied by ruleset's rule_id as a
 * wouldDeny event when that rule is in audit mode. A global function: the
 * verifier checks it once, apart from the scan's states. */
__noinline int mapping_audited(__u64 cgroup_id, __u32 ruleset, __u32 rule_id, __u32 action, __u64 dentry)
{
	if (!audited(ruleset, rule_id))
		return 0;
	count(COUNTER_AUDITED);
	struct event *ev = event_new(cgroup_id, action | ACTION_AUDITED, ruleset, rule_id);
	if (!ev)
		return 1;
	struct task_struct *task = bpf_get_current_task_btf();

	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->flags = rule_id == AUDIT_UNRESOLVED ? EVENT_UNRESOLVED : 0;
	if (dentry)
		bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename),
					  BPF_CORE_READ((struct dentry *)dentry, d_name.name));
	bpf_ringbuf_submit(ev, 0);
	return 1;
}

enum {
	MATCH_PASS = 0,
	MATCH_DENIED,
	MATCH_AUDITED, /* denied by an audit-mode rule: recorded, not refused */
};

/* run_match runs match_file with a fresh match state in a frame of its own:
 * next to the scan state it does not fit one BPF stack frame. */
static __noinline int run_match(struct vma_scan *s, struct file *file, struct task_struct *task)
{
	/* judge() without the allow list is match_file's decision, in a
	 * global function the verifier checks once for exec and mappings. */
	struct exec_req r = {};

	r.owner_cgroup = s->owner_cgroup;
	r.ruleset = s->ruleset;
	req_file(&r, file);
	int denied = judge(&r);

	s->rule_id = r.rule_id;
	s->unresolved = r.unresolved;
	if (denied && mapping_audited(s->owner_cgroup, s->ruleset, r.rule_id,
				      s->stage == STAGE_LSM ? ACTION_MMAP_DENIED : ACTION_MMAP_KILLED,
				      (__u64)BPF_CORE_READ(file, f_path.dentry)))
		return MATCH_AUDITED;
	return denied ? MATCH_DENIED : MATCH_PASS;
}

/* deny_file runs the exec decision on one file with a fresh match state,
 * unless the same path object with the same identity passed under the same
 * rules with no path-changing system call and no rule change since: a pass
 * is cached, never a denial. At exit, the file the entry check passed is
 * not looked up again either. No pointer stays live across match_file, so
 * that the verifier sees one state there. */
static __always_inline bool deny_file(struct vma_scan *s, struct file *file, struct task_struct *task)
{
	struct mmap_task *t = bpf_task_storage_get(&mmap_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	s->rule_id = 0;
	s->unresolved = 0;
	if (!t || !view_of(file, t)) {
		/* No room to judge it: refused. */
		s->unresolved = 1;
		s->denied = 1;
		s->denied_dentry = (__u64)BPF_CORE_READ(file, f_path.dentry);
		return true;
	}
	struct pass_key *k = &t->key;

	k->root_dentry = (__u64)task->fs->root.dentry;
	k->root_mnt = (__u64)task->fs->root.mnt;
	k->cgroup = s->owner_cgroup;
	k->ruleset = s->ruleset;
	k->pad = 0;
	if (s->stage == STAGE_EXIT && t->valid && same_key(&t->passed, k))
		return false;
	t->cache = 0;
	if (s->stage != STAGE_LSM && read_gens(&t->gen)) {
		if (passed_before(k, &t->gen))
			goto passed;
		t->cache = 1;
	}
	int verdict = run_match(s, (struct file *)t->view, task);

	t = bpf_task_storage_get(&mmap_tasks, task, 0, 0);
	if (!t) /* cannot happen: it was there before the walk */
		return verdict == MATCH_DENIED;
	if (verdict == MATCH_DENIED) {
		s->denied = 1;
		s->denied_dentry = t->key.dentry;
		return true;
	}
	/* An audited denial is not a pass to cache: the mode may change. */
	if (t->cache && verdict == MATCH_PASS)
		bpf_map_update_elem(&mmap_passes, &t->key, &t->gen, BPF_ANY);
passed:
	if (s->stage == STAGE_ENTRY) {
		t->passed = t->key;
		t->valid = 1;
	}
	return false;
}

/* One mapping of the range per step. mprotect changes the mappings up to
 * the first hole and fails there, so the scan stops at a hole too. */
static long scan_step(__u32 i, struct vma_scan *s)
{
	struct task_struct *task = bpf_get_current_task_btf();

	s->found_file = 0;
	long err = bpf_find_vma(task, s->cursor, vma_found, s, 0);
	if (err == -EBUSY) {
		/* Another thread holds the address space lock: try again, within
		 * the loop's bound. No retry counter: one the verifier must track
		 * exactly makes it check this step once per value. */
		return 0;
	}
	if (err) {
		s->done = 1;
		return 1;
	}
	if (s->found_file && (!s->only_exec || s->found_exec) &&
	    deny_file(s, (struct file *)s->found_file, task))
		return 1;
	if (s->found_end >= s->end || s->found_end <= s->cursor) {
		s->done = 1;
		return 1;
	}
	s->cursor = s->found_end;
	return 0;
}

/* scan_range checks every file mapped in [addr, addr+len). It returns true
 * when one is denied or the range could not be inspected (too many mappings,
 * or the lock stayed busy): both are refused. */
static __always_inline bool scan_range(struct vma_scan *s, __u64 addr, __u64 len)
{
	s->cursor = addr;
	s->end = addr + (len ? len : 1);
	if (s->end < addr)
		s->end = ~0ULL;
	bpf_loop(MAX_VMAS + FIND_VMA_TRIES, scan_step, s, 0);
	if (s->denied)
		return true;
	if (!s->done) {
		s->unresolved = 1;
		return true;
	}
	return false;
}

static __always_inline void emit_mmap(struct vma_scan *s, __u64 cgroup_id, struct task_struct *task, __u32 action)
{
	struct event *ev = event_new(cgroup_id, action, s->ruleset, s->rule_id);
	if (!ev)
		return;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->flags = s->unresolved ? EVENT_UNRESOLVED : 0;
	/* The file's own name: tracing programs cannot call bpf_d_path. */
	struct dentry *d = (struct dentry *)s->denied_dentry;
	if (d)
		bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(d, d_name.name));
	bpf_ringbuf_submit(ev, 0);
}

static __noinline void kill_mapping(struct vma_scan *s, __u64 cgroup_id, struct task_struct *task)
{
	/* Rule denials were audited in run_match; these could not be judged. */
	if (s->unresolved && mapping_audited(cgroup_id, s->ruleset, AUDIT_UNRESOLVED, ACTION_MMAP_KILLED,
					     s->denied_dentry))
		return;
	bpf_send_signal(SIGKILL);
	kill_sharers(task, SHARED_MM);
	emit_mmap(s, cgroup_id, task, ACTION_MMAP_KILLED);
}

/* Defined in net.h, which comes after this file. */
static __always_inline bool socket_call(long id);
static __always_inline void packet_socket_enter(struct pt_regs *regs, long id);

/* Before the call: the file behind the fd, or the mappings mprotect is about
 * to make executable; and packet sockets (net.h). */
SEC("tp_btf/sys_enter")
int BPF_PROG(mmap_kill, struct pt_regs *regs, long id)
{
	/* One program on sys_enter for both: each costs every system call. */
	if (socket_call(id)) {
		packet_socket_enter(regs, id);
		return 0;
	}
	struct map_args a = {};
	bool unreadable = false;
	enum map_call call = decode_call(regs, id, &a, &unreadable);

	if (call == CALL_NONE)
		return 0;
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_EXEC))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct mmap_task *t = bpf_task_storage_get(&mmap_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	struct vma_scan s = {};

	if (t)
		t->valid = 0;
	s.ruleset = o.rule->ruleset;
	s.owner_cgroup = o.cgroup_id;
	if (unreadable) {
		s.unresolved = 1;
		kill_mapping(&s, o.cgroup_id, task);
		return 0;
	}
	if (call == CALL_MMAP) {
		struct file *file = file_of_fd(task, a.fd);

		if (file && deny_file(&s, file, task))
			kill_mapping(&s, o.cgroup_id, task);
		return 0;
	}
	if (scan_range(&s, a.addr, a.len))
		kill_mapping(&s, o.cgroup_id, task);
	return 0;
}

/* x86-64 and ia32 numbers of the system calls that change the path of an
 * existing file or mount. */
#define NR_RENAME 82
#define NR_RENAMEAT 264
#define NR_RENAMEAT2 316
#define NR_MOUNT 165
#define NR_UMOUNT2 166
#define NR_PIVOT_ROOT 155
#define NR_MOVE_MOUNT 429 /* the same number for ia32 */
#define NR32_RENAME 38
#define NR32_RENAMEAT 302
#define NR32_RENAMEAT2 353
#define NR32_MOUNT 21
#define NR32_UMOUNT 22
#define NR32_UMOUNT2 52
#define NR32_PIVOT_ROOT 217

/* changes_paths says whether system call id (returning now) may have moved
 * a file or a mount, failed or not: cached passes must go. */
static __always_inline bool changes_paths(long id)
{
	bool native;

	switch (id) {
	case NR_MOVE_MOUNT:
		return true;
	case NR_RENAME:
	case NR_RENAMEAT:
	case NR_RENAMEAT2:
	case NR_MOUNT:
	case NR_UMOUNT2:
	case NR_PIVOT_ROOT:
		native = true;
		break;
	case NR32_RENAME:
	case NR32_RENAMEAT:
	case NR32_RENAMEAT2:
	case NR32_MOUNT:
	case NR32_UMOUNT:
	case NR32_UMOUNT2:
	case NR32_PIVOT_ROOT:
		native = false;
		break;
	default:
		return false;
	}
	struct task_struct *task = bpf_get_current_task_btf();
	bool compat = task->thread_info.status & TS_COMPAT;
	return native != compat;
}

/* After the call: the mappings it made executable, whatever fd or mapping
 * another thread swapped in after the entry check. */
SEC("tp_btf/sys_exit")
int BPF_PROG(mmap_kill_exit, struct pt_regs *regs, long ret)
{
	if (changes_paths(regs->orig_ax)) {
		__u32 zero = 0;
		__u64 *pg = bpf_map_lookup_elem(&path_gen, &zero);
		if (pg)
			__sync_fetch_and_add(pg, 1);
		return 0;
	}
	if (ret < 0 && ret > -4096)
		return 0;
	struct map_args a = {};
	bool unreadable = false;
	enum map_call call = decode_call(regs, regs->orig_ax, &a, &unreadable);

	if (call == CALL_NONE)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();

	/* Killed on entry already: one event per kill. */
	if (task->pending.signal.sig[0] & (1UL << (SIGKILL - 1)))
		return 0;
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_EXEC))
		return 0;
	struct vma_scan s = {};

	s.ruleset = o.rule->ruleset;
	s.owner_cgroup = o.cgroup_id;
	s.only_exec = 1;
	s.stage = STAGE_EXIT;
	if (call == CALL_MMAP) {
		/* One mmap makes one mapping, at the address it returns. */
		a.addr = (__u64)ret;
		a.len = 1;
	}
	if (scan_range(&s, a.addr, a.len))
		kill_mapping(&s, o.cgroup_id, task);
	struct mmap_task *t = bpf_task_storage_get(&mmap_tasks, task, 0, 0);
	if (t)
		t->valid = 0;
	return 0;
}

/* lsm mode: mmap and mprotect fail with EPERM. */
static __always_inline int deny_mapping_lsm(struct file *file, unsigned long prot)
{
	if (!file || !(prot & PROT_EXEC))
		return 0;
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_EXEC))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct vma_scan s = {};

	s.ruleset = o.rule->ruleset;
	s.owner_cgroup = o.cgroup_id;
	s.stage = STAGE_LSM;
	if (!deny_file(&s, file, task))
		return 0;
	if (s.unresolved && mapping_audited(o.cgroup_id, s.ruleset, AUDIT_UNRESOLVED, ACTION_MMAP_DENIED, s.denied_dentry))
		return 0;
	emit_mmap(&s, o.cgroup_id, task, ACTION_MMAP_DENIED);
	return -EPERM;
}

/* prot is the final protection, PROT_EXEC added by READ_IMPLIES_EXEC. */
SEC("lsm/mmap_file")
int BPF_PROG(mmap_lsm, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags, int ret)
{
	if (ret)
		return ret;
	return deny_mapping_lsm(file, prot);
}

SEC("lsm/file_mprotect")
int BPF_PROG(mprotect_lsm, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot, int ret)
{
	if (ret)
		return ret;
	return deny_mapping_lsm(vma->vm_file, prot);
}

#endif
