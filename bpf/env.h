/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Environment capture: with the switch in capture_config on, proc_exec
 * copies a registered container's new image's environment into
 * process_envs, keyed by tgid like the process table, so that table's
 * entries stay the same size when capture is off. */
#ifndef HOLDFAST_ENV_H
#define HOLDFAST_ENV_H

#define PROC_ENV_LEN 1024 /* a power of two; keeps up to 1023 bytes, NUL-separated */

/* process_config.flags (map capture_config) */
#define PROC_CAPTURE_ENV (1u << 0)

/* process_env.flags */
#define PROC_ENV_CUT (1u << 0) /* the environment was longer than PROC_ENV_LEN */

/* Set by the engine from its flags; off by default. */
struct process_config {
	__u32 flags;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct process_config);
} capture_config SEC(".maps");

/* One process's environment as its exec left it (a forked child gets its
 * parent's). start_ns tells a reused pid's stale entry. */
struct process_env {
	__u64 start_ns; /* task->start_boottime of the leader, as in struct process */
	__u16 env_len;
	__u8 flags;
	__u8 pad[5];
	char env[PROC_ENV_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, struct process_env);
} process_envs SEC(".maps");

/* struct process_env does not fit the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct process_env);
} process_env_scratch SEC(".maps");

static __always_inline bool env_capture_on(void)
{
	__u32 zero = 0;
	struct process_config *c = bpf_map_lookup_elem(&capture_config, &zero);

	return c && (c->flags & PROC_CAPTURE_ENV);
}

/* capture_env copies the current task's environment (the image exec just
 * loaded: its stack, written by execve, is resident) into process_envs.
 * Called from proc_exec only, where current is the task that exec'd. */
static __noinline int capture_env(__u32 tgid, __u64 start_ns)
{
	__u32 zero = 0;
	struct process_env *s = bpf_map_lookup_elem(&process_env_scratch, &zero);

	if (!s)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	unsigned long start = BPF_CORE_READ(task, mm, env_start);
	unsigned long end = BPF_CORE_READ(task, mm, env_end);
	__u64 len = end > start ? end - start : 0;

	s->start_ns = start_ns;
	s->flags = 0;
	s->env_len = 0;
	if (len > PROC_ENV_LEN - 1) {
		len = PROC_ENV_LEN - 1;
		s->flags |= PROC_ENV_CUT;
	}
	/* The mask proves the bound to the verifier; len is below it. */
	if (len && bpf_probe_read_user(s->env, len & (PROC_ENV_LEN - 1), (void *)start) == 0)
		s->env_len = len;
	bpf_map_update_elem(&process_envs, &tgid, s, BPF_ANY);
	return 0;
}

/* A forked child shares its parent's environment until it execs. */
static __noinline int inherit_env(__u32 ptgid, __u32 tgid, __u64 start_ns)
{
	struct process_env *pe = bpf_map_lookup_elem(&process_envs, &ptgid);

	if (!pe || bpf_map_update_elem(&process_envs, &tgid, pe, BPF_ANY))
		return 0;
	struct process_env *c = bpf_map_lookup_elem(&process_envs, &tgid);

	if (c)
		c->start_ns = start_ns;
	return 0;
}

#endif
