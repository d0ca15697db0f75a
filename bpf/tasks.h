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

/* kill_files_sharers kills every other thread group that shares the
 * caller's file table (clone CLONE_FILES without CLONE_THREAD): the socket
 * the killed caller is about to make lands in that table, where they could
 * use it. Walks every thread of the machine, on this rare path only. */
static __always_inline void kill_files_sharers(struct task_struct *task)
{
	struct files_struct *files = task->files;
	struct bpf_iter_task it;
	struct task_struct *t;

	if (!bpf_ksym_exists(bpf_send_signal_task) || !bpf_ksym_exists(bpf_iter_task_new) ||
	    !bpf_ksym_exists(bpf_task_acquire))
		return;
	bpf_iter_task_new(&it, NULL, BPF_TASK_ITER_ALL_THREADS);
	while ((t = bpf_iter_task_next(&it))) {
		if (t->files != files || t->tgid == task->tgid)
			continue;
		struct task_struct *ref = bpf_task_acquire(t);
		if (ref) {
			bpf_send_signal_task(ref, SIGKILL, PIDTYPE_TGID, 0);
			bpf_task_release(ref);
		}
	}
	bpf_iter_task_destroy(&it);
}

/* kill_mm_sharers kills every other thread group using the caller's address
 * space: after vfork or clone(CLONE_VM) a mapping the killed caller made
 * stays in the space they share, and they would run on with it. */
static __always_inline void kill_mm_sharers(struct task_struct *task)
{
	struct mm_struct *mm = task->mm;
	struct bpf_iter_task it;
	struct task_struct *t;

	if (!mm || !bpf_ksym_exists(bpf_send_signal_task) || !bpf_ksym_exists(bpf_iter_task_new) ||
	    !bpf_ksym_exists(bpf_task_acquire))
		return;
	bpf_iter_task_new(&it, NULL, BPF_TASK_ITER_ALL_THREADS);
	while ((t = bpf_iter_task_next(&it))) {
		if (t->mm != mm || t->tgid == task->tgid)
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
