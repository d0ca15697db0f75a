/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Process tracking for registered containers: fork, exec and exit of
 * their processes in a pinned LRU table keyed by tgid, so that an event
 * names the process that acted and user space can walk its ancestors. Each
 * fork and exec costs one map update (or an in-place write), each exit one
 * delete. The table also carries the ancestor classes that
 * ancestry-scoped rules (from.ancestors) test at the decision. */
#ifndef HOLDFAST_PROCESS_H
#define HOLDFAST_PROCESS_H

#define PROC_BINARY_LEN 256
#define PROC_ARGS_LEN 256 /* a power of two; argv keeps up to 255 bytes, NUL-separated */
#define PROC_CWD_LEN 64

/* process.flags */
#define PROC_EXECED (1u << 0)     /* binary and args are its own exec's, not inherited at fork */
/* bit 1 is unused (kept processes are in process_kept) */
#define PROC_EXITED (1u << 2)     /* exited, kept for an event (process_kept) */
#define PROC_ARGS_CUT (1u << 3)   /* argv was longer than PROC_ARGS_LEN */
#define PROC_CONTAINER_ROOT (1u << 4) /* its parent is outside the container: the chain ends here */

/* One process (thread group). Its exec ID is (boot ID, start_ns in clock
 * ticks, pid), which /proc/<pid>/stat gives too (lineage.ExecID). */
struct process {
	__u64 start_ns;        /* task->start_boottime of the leader */
	__u64 parent_start_ns; /* the same of real_parent's leader */
	__u64 cgroup_id;       /* the registered cgroup it belongs to */
	__u32 pid;             /* tgid */
	__u32 ppid;            /* real_parent's tgid */
	__u32 uid;
	__u16 args_len;
	__u8 flags;
	/* Ancestor classes (EXEC_ANCESTOR) of its ancestors and of the images
	 * it ran before its current one; self is the current image's. */
	__u8 lineage;
	__u8 self;
	__u8 pad[7];
	char binary[PROC_BINARY_LEN]; /* the path execve was given */
	char args[PROC_ARGS_LEN];
	char cwd[PROC_CWD_LEN]; /* the working directory's name only */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32); /* tgid */
	__type(value, struct process);
} processes SEC(".maps");

/* Processes an event named, by tgid, with their start: their entries
 * outlive their exit until user space has described the event and deletes
 * both. Kept apart from the entries so user space never rewrites one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
} process_kept SEC(".maps");

/* A zeroed entry to start from: struct process does not fit the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct process);
} process_scratch SEC(".maps");

static __always_inline __u64 leader_start(struct task_struct *t)
{
	return BPF_CORE_READ(t, group_leader, start_boottime);
}

/* Ancestors kept for an event: deeper chains are described from /proc or
 * as incomplete if their processes are gone. */
#define KEEP_DEPTH 16

/* keep_chain records a process and its ancestors in the container in
 * process_kept, as named by an event: their exits leave their entries for
 * user space, which releases them once it described the event. A global
 * function, verified once; called only for events that reached the ring
 * buffer. */
__noinline int keep_chain(__u32 tgid)
{
	for (int i = 0; i < KEEP_DEPTH; i++) {
		struct process *p = bpf_map_lookup_elem(&processes, &tgid);

		if (!p)
			break;
		bpf_map_update_elem(&process_kept, &tgid, &p->start_ns, BPF_ANY);
		if (p->flags & PROC_CONTAINER_ROOT)
			break;
		tgid = p->ppid;
	}
	return 0;
}

/* The classes of a process of a container whose chain the table lost: its
 * entry (or an ancestor's) was evicted from the LRU table (a workload can
 * start more processes than --max-processes to that end), or it started
 * before tracking. Failing closed, it counts as descended from every
 * ancestor binary, so scoped rules apply to it as if unscoped. */
#define LINEAGE_LOST 0xff

/* lost_lineage is the classes of task, a process of the container
 * cgroup_id without a table entry: none for the container's first process
 * (its parent is outside), LINEAGE_LOST for the others. */
static __always_inline __u8 lost_lineage(struct task_struct *task, __u64 cgroup_id)
{
	struct cgroup *pcg = BPF_CORE_READ(task, real_parent, cgroups, dfl_cgrp);

	return registered_ancestor(pcg) == cgroup_id ? LINEAGE_LOST : 0;
}

/* The ancestor classes an exec by task is judged with: its ancestors' and
 * its own images so far (the new image runs below them). */
static __always_inline __u8 exec_lineage(struct task_struct *task, __u64 cgroup_id)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct process *p = bpf_map_lookup_elem(&processes, &tgid);

	if (!p || p->start_ns != leader_start(task))
		return lost_lineage(task, cgroup_id);
	return p->lineage | p->self;
}

/* The ancestor classes a network decision for the current process is
 * made with: those of its ancestors and earlier images, not its own. A
 * process without an entry lost its chain (the container's first process
 * has one from its exec); an exited one's entry, kept for an event, may
 * be another process's whose pid was reused. */
static __always_inline __u8 current_lineage(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct process *p = bpf_map_lookup_elem(&processes, &tgid);

	return p && !(p->flags & PROC_EXITED) ? p->lineage : LINEAGE_LOST;
}

/* After an exec that was let through: the image it replaced becomes an
 * ancestor class, and the new image's binary (by the hash of its whole
 * path) gives its own. A process absent from the table (started before
 * tracking, or evicted) has no classes: rules scoped to ancestors do not
 * apply to it. */
__noinline int note_exec_class(__u32 tgid, __u32 ruleset, __u64 path_hash)
{
	struct process *p = bpf_map_lookup_elem(&processes, &tgid);

	if (!p)
		return 0;
	struct exec_key key = {.ruleset = ruleset, .kind = EXEC_ANCESTOR, .hash = path_hash};
	struct exec_value *v = path_hash ? bpf_map_lookup_elem(&exec_rules, &key) : NULL;

	p->lineage |= p->self;
	p->self = v ? (__u8)v->from : 0;
	return 0;
}

/* Fills the exec's own fields of p from the new image. */
static __always_inline void fill_exec(struct process *p, struct task_struct *task, struct linux_binprm *bprm,
				      __u64 cgroup_id)
{
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);

	p->start_ns = leader_start(task);
	p->pid = BPF_CORE_READ(task, tgid);
	p->ppid = BPF_CORE_READ(parent, tgid);
	p->parent_start_ns = leader_start(parent);
	p->cgroup_id = cgroup_id;
	p->uid = (__u32)bpf_get_current_uid_gid();
	p->flags |= PROC_EXECED;
	bpf_probe_read_kernel_str(p->binary, sizeof(p->binary), BPF_CORE_READ(bprm, filename));
	bpf_probe_read_kernel_str(p->cwd, sizeof(p->cwd), BPF_CORE_READ(task, fs, pwd.dentry, d_name.name));

	/* argv as the new image's stack holds it: written by execve just
	 * now, so resident. */
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = end > start ? end - start : 0;

	p->flags &= ~PROC_ARGS_CUT;
	if (len > PROC_ARGS_LEN - 1) {
		len = PROC_ARGS_LEN - 1;
		p->flags |= PROC_ARGS_CUT;
	}
	p->args_len = 0;
	/* The mask proves the bound to the verifier; len is below it. */
	if (len && bpf_probe_read_user(p->args, len & (PROC_ARGS_LEN - 1), (void *)start) == 0)
		p->args_len = len;
}

/* An informational event (not a denial: neither rate limited nor counted
 * in denials); a full ring buffer counts COUNTER_EVENTS_LOST. */
static __always_inline void emit_process(struct process *p, __u32 action)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	/* Kept only for an event that reaches user space, which releases it;
	 * before the submit, so the release cannot come first. */
	__u32 tgid = p->pid;

	bpf_map_update_elem(&process_kept, &tgid, &p->start_ns, BPF_ANY);
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = p->cgroup_id;
	ev->pid = p->pid;
	ev->tgid = p->pid;
	ev->ppid = p->ppid;
	ev->action = action;
	ev->start_ns = p->start_ns;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), p->binary);
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline bool events_on(__u64 cgroup_id)
{
	struct cgroup_rule *r = bpf_map_lookup_elem(&cgroup_rules, &cgroup_id);

	return r && (r->flags & CG_EXEC_EVENTS);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(proc_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct owner o;

	if (!owner_of_current(&o))
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct process *p = bpf_map_lookup_elem(&processes, &tgid);

	if (!p || p->start_ns != leader_start(task)) {
		/* Not seen at fork (started before tracking, or forked
		 * outside the container, as runtimes start its first process). */
		__u32 zero = 0;
		struct process *s = bpf_map_lookup_elem(&process_scratch, &zero);

		if (!s)
			return 0;
		__builtin_memset(s, 0, sizeof(*s));
		struct cgroup *pcg = BPF_CORE_READ(task, real_parent, cgroups, dfl_cgrp);

		if (registered_ancestor(pcg) != o.cgroup_id)
			s->flags = PROC_CONTAINER_ROOT;
		else
			s->lineage = LINEAGE_LOST;
		fill_exec(s, task, bprm, o.cgroup_id);
		bpf_map_update_elem(&processes, &tgid, s, BPF_ANY);
		p = bpf_map_lookup_elem(&processes, &tgid);
		if (!p)
			return 0;
	} else {
		fill_exec(p, task, bprm, o.cgroup_id);
	}
	if (env_capture_on())
		capture_env(tgid, p->start_ns);
	if (o.rule->flags & CG_EXEC_EVENTS)
		emit_process(p, ACTION_PROCESS_EXEC);
	return 0;
}

/* A new process of a tracked one starts as a copy of its parent's entry:
 * same image, its parent's classes as ancestors. Threads are not
 * processes. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(proc_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	struct process *pp = bpf_map_lookup_elem(&processes, &ptgid);

	if (!pp)
		return 0;
	__u32 tgid = BPF_CORE_READ(child, tgid);

	if (bpf_map_update_elem(&processes, &tgid, pp, BPF_ANY))
		return 0;
	struct process *c = bpf_map_lookup_elem(&processes, &tgid);

	if (!c)
		return 0;
	struct task_struct *rp = BPF_CORE_READ(child, real_parent);

	c->lineage |= c->self;
	c->start_ns = BPF_CORE_READ(child, start_boottime);
	c->pid = tgid;
	c->ppid = BPF_CORE_READ(rp, tgid);
	c->parent_start_ns = leader_start(rp);
	c->flags &= ~(PROC_EXECED | PROC_EXITED | PROC_CONTAINER_ROOT);
	if (env_capture_on())
		inherit_env(ptgid, tgid, c->start_ns);
	return 0;
}

/* The last thread of a tracked process leaves: its entry goes, unless an
 * event about it still has to be described. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct process *p = bpf_map_lookup_elem(&processes, &tgid);

	if (!p || p->start_ns != leader_start(task))
		return 0;
	if (events_on(p->cgroup_id))
		emit_process(p, ACTION_PROCESS_EXIT);
	__u64 *kept = bpf_map_lookup_elem(&process_kept, &tgid);

	if (kept && *kept == p->start_ns)
		p->flags |= PROC_EXITED;
	else {
		bpf_map_delete_elem(&processes, &tgid);
		if (env_capture_on())
			bpf_map_delete_elem(&process_envs, &tgid);
	}
	return 0;
}

#endif
