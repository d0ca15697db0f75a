/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Events to user space through the pinned ring buffer. */
#ifndef HOLDFAST_EVENTS_H
#define HOLDFAST_EVENTS_H

/* event_new reserves an event and fills the fields every action has; the
 * caller fills the rest and submits it. NULL means no event is sent (the
 * loss is counted). */
static __always_inline struct event *event_new(__u64 cgroup_id, __u32 action, __u32 ruleset, __u32 rule_id)
{
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(COUNTER_EVENTS_LOST);
		return NULL;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = cgroup_id;
	ev->pid = (__u32)pid_tgid;
	ev->tgid = pid_tgid >> 32;
	ev->action = action;
	ev->rule_id = rule_id;
	ev->ruleset = ruleset;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	return ev;
}

#endif
