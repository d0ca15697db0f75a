/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Killing the other processes that share what a killed caller leaves
 * behind: an address space holding a denied mapping, a file table holding a
 * packet socket. Both walk every task of the machine, on the rare deny path
 * only; kernels without the task-iterator and signal kfuncs (before 6.13)
 * skip it. */
#ifndef HOLDFAST_TASKS_H
#define HOLDFAST_TASKS_H

#define BPF_TASK_ITER_ALL_THREADS 1

#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

struct bpf_iter_task {
	__u64 __opaque[3];
} __attribute__((aligned(8)));

extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task__nullable, unsigned int flags) __ksym __weak;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __ksym __weak;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __ksym __weak;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;
extern int bpf_send_signal_task(struct task_struct *task, int sig, enum pid_type type, __u64 value) __ksym __weak;

/* What a killed caller leaves to the processes that share it. */
enum shared {
	SHARED_FILES, /* clone(CLONE_FILES): a packet socket lands in the table */
	SHARED_MM,    /* vfork, clone(CLONE_VM): a denied mapping stays */
};

/* kill_sharers kills every other thread group that shares task's file
 * table or address space, which they would go on using after the caller's
 * SIGKILL. */
static __always_inline void kill_sharers(struct task_struct *task, enum shared what)
{
	void *mine = what == SHARED_MM ? (void *)task->mm : (void *)task->files;
	struct bpf_iter_task it;
	struct task_struct *t;

	if (!mine || !bpf_ksym_exists(bpf_send_signal_task) || !bpf_ksym_exists(bpf_iter_task_new) ||
	    !bpf_ksym_exists(bpf_task_acquire))
		return;
	bpf_iter_task_new(&it, NULL, BPF_TASK_ITER_ALL_THREADS);
	while ((t = bpf_iter_task_next(&it))) {
		void *theirs = what == SHARED_MM ? (void *)t->mm : (void *)t->files;
		if (theirs != mine || t->tgid == task->tgid)
			continue;
		struct task_struct *ref = bpf_task_acquire(t);
		if (ref) {
			bpf_send_signal_task(ref, SIGKILL, PIDTYPE_TGID, 0);
			bpf_task_release(ref);
		}
	}
	bpf_iter_task_destroy(&it);
}

#endif
