/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* The ABI shared with the Go loader: constants, key and value layouts, maps.
 * Mirrored in rules.go and maps.go; any change here needs a new bpf.ABI. */
#ifndef HOLDFAST_MAPS_H
#define HOLDFAST_MAPS_H

#define EPERM 1
#define SIGKILL 9
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_PACKET 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_SCTP 132
#define IPPROTO_MPTCP 262
#define BPF_TCP_LISTEN 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#define MAX_PATH_DEPTH 32 /* bpf.MaxPathDepth; a power of two (ring mask) */
#define MAX_NAME_LEN 255  /* bpf.MaxNameLen */
#define MAX_NAME_WORDS ((MAX_NAME_LEN + 8) / 8)
/* Dentry and mount steps before a path counts as unresolvable. Real paths
 * stay under PATH_MAX (at most 2048 components); anything deeper is an
 * attempt to hide a binary below a denied directory, so it is refused. */
#define MAX_WALK 8192
#define MAX_PORT_RULES 16   /* port rules inline in an LPM value */
#define CHUNK_PORT_RULES 16 /* port rules per overflow chunk */

/* cgroup_rule.flags */
#define CG_EXEC (1u << 0)
#define CG_CONNECT (1u << 1)
/* bit 2 is unused (audit mode is per rule: audit_rules) */
#define CG_SOCKET (1u << 3)
#define CG_BIND (1u << 4)
/* The ruleset has an allow list: only files on it may be exec'd. */
#define CG_EXEC_ALLOW (1u << 5)
/* The ruleset has directory-prefix deny rules: the exec checks look up the
 * identities of the file's directories (file_rules, FILE_KIND_DIR). */
#define CG_EXEC_DIRS (1u << 6)
/* The ruleset has rules scoped by ancestry (from.ancestors): the exec
 * programs keep the ancestor classes of its processes (process.h). */
#define CG_ANCESTRY (1u << 7)
/* process_exec and process_exit events for the cgroup's processes. */
#define CG_EXEC_EVENTS (1u << 8)

/* event.flags: the path was too deep to resolve, so it was refused without a
 * rule match. */
#define EVENT_UNRESOLVED (1u << 0)
/* event.flags: the file is not on the ruleset's allow list (rule_id is 0). */
#define EVENT_NOT_ALLOWED (1u << 1)

/* Bit 1 of the kind says allow rather than deny. */
enum exec_kind {
	EXEC_EXACT = 0,
	EXEC_PREFIX = 1,
	EXEC_ALLOW_EXACT = 2,
	EXEC_ALLOW_PREFIX = 3,
	/* Not a rule: the binary is an ancestor of ancestry-scoped rules;
	 * exec_value.from holds its class bit. */
	EXEC_ANCESTOR = 4,
	/* EXEC_EXACT and EXEC_PREFIX scoped to ancestors (exec_value.from). */
	EXEC_EXACT_SCOPED = 5,
	EXEC_PREFIX_SCOPED = 6,
};
#define EXEC_SCOPED (EXEC_EXACT_SCOPED - EXEC_EXACT)

enum action {
	ACTION_EXEC_KILLED = 1,
	ACTION_EXEC_DENIED = 2,
	ACTION_CONNECT_REFUSED = 3,
	ACTION_SENDMSG_REFUSED = 4,
	ACTION_MMAP_KILLED = 5, /* a denied file mapped executable (kill mode) */
	ACTION_MMAP_DENIED = 6, /* mmap/mprotect failed with EPERM (lsm mode) */
	ACTION_SOCKET_REFUSED = 7,
	ACTION_BIND_REFUSED = 8,
	ACTION_PACKET_DROPPED = 9,
	ACTION_SOCKET_KILLED = 10,
	ACTION_MOVE_KILLED = 11, /* a task moved out of its container's cgroup got SIGKILL */
	ACTION_PROCESS_EXEC = 12, /* informational (CG_EXEC_EVENTS) */
	ACTION_PROCESS_EXIT = 13,
};

/* Or'd into an action (events, denials): the rule's policy is in audit
 * mode, so the operation went ahead (no signal, no EPERM, no drop). */
#define ACTION_AUDITED (1u << 8)

enum counter {
	COUNTER_EXEC_CHECKED,
	COUNTER_EXEC_DENIED,
	COUNTER_EXEC_UNRESOLVED,
	COUNTER_CONNECT_CHECKED,
	COUNTER_CONNECT_REFUSED,
	COUNTER_EVENTS_LOST,
	COUNTER_DENIALS_UNTRACKED, /* denials map full: counted here only, no event */
	COUNTER_AUDITED, /* decisions of audit-mode rules: recorded, let through */
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

/* The secret SipHash key of exec_key.hash, made once per install: a path
 * hash an attacker cannot compute cannot be forged to hit an allow rule. */
struct hash_key {
	__u64 k0;
	__u64 k1;
};

struct exec_value {
	__u32 rule_id;
	/* Ancestor classes (process.h): a rule with any applies only to
	 * processes descended from one of them; 0 applies to every process. */
	__u32 from;
};

/* Keys of a ruleset's own LPM tries (net4_rules and net6_rules map a ruleset
 * ID to them), so a lookup's cost does not depend on other rulesets. */
struct net4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct net6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct port_rule {
	__u16 lo;
	__u16 hi;
	__u8 proto; /* 0 = any */
	__u8 from;  /* ancestor classes, as exec_value.from */
	__u8 pad[2];
	__u32 rule_id;
};

/* An LPM lookup returns only the longest match, so the loader stores in each
 * prefix the rules of every shorter prefix of the ruleset that contains it.
 * Rules past MAX_PORT_RULES continue in port_chunks: more is 1 + the seq of
 * the first chunk (0: none). */
struct port_rules {
	__u32 n;
	__u32 more;
	struct port_rule rules[MAX_PORT_RULES];
};

struct chunk_key {
	__u32 ruleset;
	__u32 seq; /* unique within the ruleset */
};

struct port_chunk {
	__u32 n;
	__u32 next; /* 1 + seq of the next chunk, 0: last */
	struct port_rule rules[CHUNK_PORT_RULES];
};

/* network.sockets.deny: socket() of (family, type, protocol) is refused;
 * SOCKET_ANY in type or protocol matches every value. */
#define SOCKET_ANY 0xffff
struct socket_key {
	__u32 ruleset;
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 pad;
};

/* The destination sendmsg4/6 last saw on this CPU and the socket it was
 * for: egress lets the datagram that follows through without its own
 * lookups when NAT left that destination as it was. */
struct sendmsg_pass {
	__u64 cookie;
	__u32 ip6[4]; /* IPv4 as ::ffff:a.b.c.d */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sendmsg_pass);
} sendmsg_passes SEC(".maps");

/* Written by the loader only; lets SetCgroup take flags from what PutRuleset
 * stored, also after another process adopted the pins. */
struct ruleset_info {
	__u32 flags;
	__u32 exec_rules;
	__u32 net4_prefixes;
	__u32 net6_prefixes;
	__u32 sockets;
	__u32 bind_rules;
	__u32 chunks;
	__u32 pad;
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
	/* The acting process: its leader's start (ns since boot, as
	 * task->start_boottime) and, with tgid, its exec ID. */
	__u64 start_ns;
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

/* Clang emits the key types of inner maps as forward declarations only;
 * this map, never used, carries their full BTF. */
struct net_key_types {
	struct net4_key k4;
	struct net6_key k6;
	struct port_rules v;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct net_key_types);
} net_key_types SEC(".maps");

/* Capacities here are defaults; bpf.Options overrides them before load.
 * Each ruleset has its own tries (inner maps defined inline, as BTF needs
 * their full type). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__uint(max_entries, 16384);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct net4_key);
		__type(value, struct port_rules);
	});
} net4_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);
		__uint(max_entries, 16384);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__type(key, struct net6_key);
		__type(value, struct port_rules);
	});
} net6_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct chunk_key);
	__type(value, struct port_chunk);
} port_chunks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct socket_key);
	__type(value, __u32); /* rule ID */
} socket_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32); /* ruleset */
	__type(value, struct port_rules);
} bind_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct ruleset_info);
} rulesets SEC(".maps");

/* Written once by the loader and frozen; programs only read it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_RDONLY_PROG);
	__type(key, __u32);
	__type(value, struct hash_key);
} exec_hash_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__type(value, struct event); /* for BTF only; ring buffers have no value size */
} events SEC(".maps");

/* Denials per container, rule and action. Every denial is counted here
 * before the ring buffer is touched, so user space reports exact totals
 * however many events the rate limit (events.h) holds back. */
struct denial_key {
	__u64 cgroup_id;
	__u32 rule_id;
	__u32 action;
};

struct denial_value {
	__u64 total;        /* every denial */
	__u64 sent;         /* reached the ring buffer */
	__u64 lost;         /* allowed by the rate limit, but the ring buffer was full */
	__u64 window_start; /* CLOCK_BOOTTIME ns */
	__u32 window_sent;  /* events let through in this window */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct denial_key);
	__type(value, struct denial_value);
} denials SEC(".maps");

/* Audit mode, per ruleset and rule: a decision by a rule with an entry
 * here is recorded and the operation goes ahead. Written apart from the
 * ruleset's rules so that switching a policy's mode changes only these
 * entries, never the rules or the cgroup entries pointing at them. */
struct audit_key {
	__u32 ruleset;
	__u32 rule_id; /* or AUDIT_UNRESOLVED, AUDIT_NOT_ALLOWED */
};

/* rule_id of refusals no rule made: an unresolvable path or mapping, and
 * a file not on the ruleset's exec allow list. */
#define AUDIT_UNRESOLVED 0
#define AUDIT_NOT_ALLOWED 0xffffffffu

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct audit_key);
	__type(value, __u32); /* unused */
} audit_rules SEC(".maps");

/* audited says whether a decision of ruleset by rule_id only records. */
static __always_inline bool audited(__u32 ruleset, __u32 rule_id)
{
	struct audit_key k = {.ruleset = ruleset, .rule_id = rule_id};

	return bpf_map_lookup_elem(&audit_rules, &k) != NULL;
}

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

#endif
