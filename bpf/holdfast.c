//go:build ignore

// holdfast enforcement programs. One program set serves every container:
// each hook does one hash lookup of the current cgroup ID and only then
// looks at rules, so cost does not grow with the number of cgroups or
// policies. Constants and layouts here are mirrored in rules.go and
// loader.go; changing them is an ABI change.

#include "headers/vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define EPERM 1
#define SIGKILL 9
#define AF_INET 2
#define AF_INET6 10

#define MAX_PATH_DEPTH 32 /* bpf.MaxPathDepth; a power of two (ring mask) */
#define MAX_NAME_LEN 255  /* bpf.MaxNameLen */
#define MAX_NAME_WORDS ((MAX_NAME_LEN + 8) / 8)
/* Dentry and mount steps before a path counts as unresolvable. Real paths
 * stay under PATH_MAX (at most 2048 components); anything deeper is an
 * attempt to hide a binary below a denied directory, so it is refused. */
#define MAX_WALK 8192
#define MAX_PORT_RULES 16
#define PATH_HASH_SEED 0xcbf29ce484222325ULL
#define PATH_HASH_PRIME 0x100000001b3ULL

/* cgroup_rule.flags */
#define CG_EXEC (1u << 0)
#define CG_CONNECT (1u << 1)
/* bit 2 is reserved for audit-only rulesets */

/* event.flags: the path was too deep to resolve, so it was refused without a
 * rule match. */
#define EVENT_UNRESOLVED (1u << 0)

enum exec_kind {
	EXEC_EXACT = 0,
	EXEC_PREFIX = 1,
};

enum action {
	ACTION_EXEC_KILLED = 1,
	ACTION_EXEC_DENIED = 2,
	ACTION_CONNECT_REFUSED = 3,
	ACTION_SENDMSG_REFUSED = 4,
};

enum counter {
	COUNTER_EXEC_CHECKED,
	COUNTER_EXEC_DENIED,
	COUNTER_EXEC_UNRESOLVED,
	COUNTER_CONNECT_CHECKED,
	COUNTER_CONNECT_REFUSED,
	COUNTER_EVENTS_LOST,
	COUNTER_MAX,
};

struct cgroup_rule {
	__u32 ruleset;
	__u32 flags;
};

struct exec_key {
	__u32 ruleset;
	__u32 kind;
	__u64 hash;
};

struct exec_value {
	__u32 rule_id;
	__u32 pad;
};

/* LPM keys: prefixlen counts the 32 ruleset bits plus the CIDR bits. */
struct net4_key {
	__u32 prefixlen;
	__u32 ruleset;
	__u8 addr[4];
};

struct net6_key {
	__u32 prefixlen;
	__u32 ruleset;
	__u8 addr[16];
};

struct port_rule {
	__u16 lo;
	__u16 hi;
	__u8 proto; /* 0 = any */
	__u8 pad[3];
	__u32 rule_id;
};

/* An LPM lookup returns only the longest match, so the loader stores in each
 * prefix the rules of every shorter prefix of the ruleset that contains it. */
struct port_rules {
	__u32 n;
	struct port_rule rules[MAX_PORT_RULES];
};

/* Written by the loader only; lets SetCgroup take flags from what PutRuleset
 * stored, also after another process adopted the pins. */
struct ruleset_info {
	__u32 flags;
	__u32 exec_rules;
	__u32 net4_prefixes;
	__u32 net6_prefixes;
	__u64 digest;
};

struct event {
	__u64 ts_ns; /* CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u32 action;
	__u32 rule_id;
	__u32 ruleset;
	__u16 family;
	__u16 port;
	__u8 proto;
	__u8 flags; /* EVENT_UNRESOLVED */
	__u8 pad[2];
	__u8 addr[16];
	char comm[16];
	char filename[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct cgroup_rule);
} cgroup_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct exec_key);
	__type(value, struct exec_value);
} exec_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net4_key);
	__type(value, struct port_rules);
} net4_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net6_key);
	__type(value, struct port_rules);
} net6_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct ruleset_info);
} rulesets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__type(value, struct event); /* for BTF only; ring buffers have no value size */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

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

/* Resolves the file being executed inside task's root and matches it against
 * the ruleset in c. Returns true when it is denied: c->rule_id says by what
 * rule, or c->unresolved that the path was too deep to resolve. */
static __always_inline bool match_exec(struct match_ctx *c, struct linux_binprm *bprm, struct task_struct *task)
{
	struct file *file = BPF_CORE_READ(bprm, file);
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
	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = cgroup_id;
	ev->pid = (__u32)pid_tgid;
	ev->tgid = pid_tgid >> 32;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->action = action;
	ev->rule_id = c->rule_id;
	ev->ruleset = c->ruleset;
	ev->flags = c->unresolved ? EVENT_UNRESOLVED : 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(ev, 0);
}

/* Fallback mode: the exec has passed the point of no return, so the new
 * image is killed before its first instruction. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_kill, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cgroup_rule *cg = bpf_map_lookup_elem(&cgroup_rules, &cgroup_id);

	if (!cg || !(cg->flags & CG_EXEC))
		return 0;
	count(COUNTER_EXEC_CHECKED);

	struct match_ctx c = {};
	c.ruleset = cg->ruleset;
	if (!match_exec(&c, bprm, p))
		return 0;
	bpf_send_signal(SIGKILL);
	count(COUNTER_EXEC_DENIED);
	emit_exec(&c, cgroup_id, bprm, p, ACTION_EXEC_KILLED);
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
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cgroup_rule *cg = bpf_map_lookup_elem(&cgroup_rules, &cgroup_id);

	if (!cg || !(cg->flags & CG_EXEC))
		return 0;
	count(COUNTER_EXEC_CHECKED);

	struct task_struct *task = bpf_get_current_task_btf();
	struct match_ctx c = {};
	c.ruleset = cg->ruleset;
	if (!match_exec(&c, bprm, task))
		return 0;
	count(COUNTER_EXEC_DENIED);
	emit_exec(&c, cgroup_id, bprm, task, ACTION_EXEC_DENIED);
	return -EPERM;
}

static __always_inline bool match_ports(struct port_rules *rules, __u16 port, __u8 proto, __u32 *rule_id)
{
	__u32 n = rules->n;

	for (__u32 i = 0; i < MAX_PORT_RULES; i++) {
		if (i >= n)
			break;
		struct port_rule *r = &rules->rules[i];
		if (port >= r->lo && port <= r->hi && (r->proto == 0 || r->proto == proto)) {
			*rule_id = r->rule_id;
			return true;
		}
	}
	return false;
}

/* Returns 1 to let the connect/sendmsg through, 0 to fail it with EPERM. */
static __always_inline int check_sock(struct bpf_sock_addr *ctx, bool v6, __u32 action)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct cgroup_rule *cg = bpf_map_lookup_elem(&cgroup_rules, &cgroup_id);

	if (!cg || !(cg->flags & CG_CONNECT))
		return 1;
	count(COUNTER_CONNECT_CHECKED);

	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 proto = (__u8)ctx->protocol;
	__u32 ip6[4] = {};
	struct port_rules *rules;

	if (v6) {
		ip6[0] = ctx->user_ip6[0];
		ip6[1] = ctx->user_ip6[1];
		ip6[2] = ctx->user_ip6[2];
		ip6[3] = ctx->user_ip6[3];
	}
	/* ::ffff:a.b.c.d is IPv4 on the wire: the v4 rules decide. */
	if (!v6 || (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff))) {
		struct net4_key key = { .prefixlen = 32 + 32, .ruleset = cg->ruleset };
		__u32 ip4 = v6 ? ip6[3] : ctx->user_ip4;
		__builtin_memcpy(key.addr, &ip4, 4);
		rules = bpf_map_lookup_elem(&net4_rules, &key);
	} else {
		struct net6_key key = { .prefixlen = 32 + 128, .ruleset = cg->ruleset };
		__builtin_memcpy(key.addr, ip6, 16);
		rules = bpf_map_lookup_elem(&net6_rules, &key);
	}
	if (!rules)
		return 1;

	__u32 rule_id = 0;
	if (!match_ports(rules, port, proto, &rule_id))
		return 1;
	count(COUNTER_CONNECT_REFUSED);

	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(COUNTER_EVENTS_LOST);
		return 0;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = cgroup_id;
	ev->pid = (__u32)pid_tgid;
	ev->tgid = pid_tgid >> 32;
	ev->action = action;
	ev->rule_id = rule_id;
	ev->ruleset = cg->ruleset;
	ev->family = v6 ? AF_INET6 : AF_INET;
	ev->port = port;
	ev->proto = proto;
	if (v6) {
		__builtin_memcpy(ev->addr, ip6, 16);
	} else {
		__u32 ip4 = ctx->user_ip4;
		__builtin_memcpy(ev->addr, &ip4, 4);
	}
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return check_sock(ctx, false, ACTION_CONNECT_REFUSED);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	return check_sock(ctx, true, ACTION_CONNECT_REFUSED);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return check_sock(ctx, false, ACTION_SENDMSG_REFUSED);
}

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx)
{
	return check_sock(ctx, true, ACTION_SENDMSG_REFUSED);
}
