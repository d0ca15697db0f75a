/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Events to user space through the pinned ring buffer, rate limited per
 * container, rule and action so a workload looping on a denied call cannot
 * flood the ring buffer, the engine or the disk. */
#ifndef HOLDFAST_EVENTS_H
#define HOLDFAST_EVENTS_H

/* bpf.EventBurst events per (cgroup, rule, action) per bpf.EventWindow;
 * the rest are only counted in denials and reported as summaries. */
#define EVENT_BURST 5
#define EVENT_WINDOW_NS (10ULL * 1000 * 1000 * 1000)

/* denial_of returns the counters of a (cgroup, rule, action), creating them;
 * NULL when the denials map is full. */
static __always_inline struct denial_value *denial_of(struct denial_key *k, __u64 now)
{
	struct denial_value *d = bpf_map_lookup_elem(&denials, k);
	if (d)
		return d;
	struct denial_value init = {.window_start = now};
	bpf_map_update_elem(&denials, k, &init, 1 /* BPF_NOEXIST */); /* EEXIST: another CPU won */
	return bpf_map_lookup_elem(&denials, k);
}

/* event_new counts a denial and, within the rate limit, reserves an event
 * and fills the fields every action has; the caller fills the rest and
 * submits it. NULL means no event is sent; the denial is counted anyway. */
static __always_inline struct event *event_new(__u64 cgroup_id, __u32 action, __u32 ruleset, __u32 rule_id)
{
	__u64 now = bpf_ktime_get_boot_ns();
	struct denial_key k = {.cgroup_id = cgroup_id, .rule_id = rule_id, .action = action};
	struct denial_value *d = denial_of(&k, now);

	if (!d) {
		count(COUNTER_DENIALS_UNTRACKED);
		return NULL;
	}
	__sync_fetch_and_add(&d->total, 1);
	/* Racy across CPUs by design: at worst a few more events than the
	 * burst get through; the counts above and below stay exact. */
	if (now - d->window_start >= EVENT_WINDOW_NS) {
		d->window_start = now;
		d->window_sent = 0;
	}
	if (d->window_sent >= EVENT_BURST)
		return NULL;
	d->window_sent++;

	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		__sync_fetch_and_add(&d->lost, 1);
		count(COUNTER_EVENTS_LOST);
		return NULL;
	}
	__sync_fetch_and_add(&d->sent, 1);
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = now;
	ev->cgroup_id = cgroup_id;
	ev->pid = (__u32)pid_tgid;
	ev->tgid = pid_tgid >> 32;
	ev->action = action;
	ev->rule_id = rule_id;
	ev->ruleset = ruleset;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	/* Egress may run in any task's context: it names no process. */
	if (action != ACTION_PACKET_DROPPED) {
		struct task_struct *cur = (struct task_struct *)bpf_get_current_task();

		ev->start_ns = leader_start(cur);
		ev->ppid = BPF_CORE_READ(cur, real_parent, tgid);
		keep_chain(ev->tgid);
	}
	return ev;
}

#endif
