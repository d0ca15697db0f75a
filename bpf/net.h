/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Network control. cgroup sock_addr hooks refuse connects and UDP sends to
 * denied destinations and denied binds with EPERM; cgroup/sock_create
 * refuses denied socket kinds (a syscall tracepoint kills AF_PACKET
 * callers); a cgroup_skb/egress program drops the packets
 * of sockets the sock_addr hooks never see (raw, ping, SCTP, ...). */
#ifndef HOLDFAST_NET_H
#define HOLDFAST_NET_H

/* Port of a packet without one (ICMP, or a fragment after the first): only
 * rules over every port match it. */
#define PORTLESS 0xffffffffu

static __always_inline bool port_rule_matches(struct port_rule *r, __u32 port, __u8 proto, __u8 lineage)
{
	if (r->proto != 0 && r->proto != proto)
		return false;
	/* Scoped to ancestors the process does not descend from. */
	if (r->from && !(r->from & lineage))
		return false;
	if (port == PORTLESS)
		return r->lo == 0 && r->hi == 65535;
	return port >= r->lo && port <= r->hi;
}

struct chunk_walk {
	struct chunk_key key;
	__u32 port;
	__u8 proto;
	__u8 lineage;
	__u32 rule_id;
	bool found;
};

static long walk_chunk(__u64 index, void *data)
{
	struct chunk_walk *w = data;
	struct port_chunk *c = bpf_map_lookup_elem(&port_chunks, &w->key);

	if (!c)
		return 1;
	for (__u32 i = 0; i < CHUNK_PORT_RULES; i++) {
		if (i >= c->n)
			break;
		if (port_rule_matches(&c->rules[i], w->port, w->proto, w->lineage)) {
			w->rule_id = c->rules[i].rule_id;
			w->found = true;
			return 1;
		}
	}
	if (c->next == 0)
		return 1;
	w->key.seq = c->next - 1;
	return 0;
}

/* match_ports checks the inline rules, then the overflow chunks (rare: more
 * than MAX_PORT_RULES rules on one prefix), walked with bpf_loop to the end of
 * the chain the loader wrote (BPF_MAX_LOOPS bounds it, far above any chunk
 * map capacity). */
static __always_inline bool match_ports(struct port_rules *rules, __u32 ruleset, __u32 port, __u8 proto, __u8 lineage,
					__u32 *rule_id)
{
	__u32 n = rules->n;

	for (__u32 i = 0; i < MAX_PORT_RULES; i++) {
		if (i >= n)
			break;
		struct port_rule *r = &rules->rules[i];
		if (port_rule_matches(r, port, proto, lineage)) {
			*rule_id = r->rule_id;
			return true;
		}
	}
	if (rules->more == 0)
		return false;
	struct chunk_walk w = { .key = { .ruleset = ruleset, .seq = rules->more - 1 }, .port = port, .proto = proto,
				.lineage = lineage };
	bpf_loop(1 << 23, walk_chunk, &w, 0);
	*rule_id = w.rule_id;
	return w.found;
}

/* lookup_dest finds the rules of the longest prefix of ruleset containing
 * ip6 (v6) or ip6[3] (v4). ::ffff:a.b.c.d is IPv4 on the wire: the v4 rules
 * decide. The unspecified address is checked as the loopback address the
 * kernel turns it into after the sock_addr hooks ran (0.0.0.0,
 * ::ffff:0.0.0.0 and ::). */
static __always_inline struct port_rules *lookup_dest(__u32 ruleset, bool v6, __u32 ip6[4])
{
	if (!v6 || (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff))) {
		void *trie = bpf_map_lookup_elem(&net4_rules, &ruleset);
		if (!trie)
			return NULL;
		struct net4_key key = { .prefixlen = 32 };
		__u32 ip4 = ip6[3];
		if (ip4 == 0)
			ip4 = bpf_htonl(0x7f000001);
		__builtin_memcpy(key.addr, &ip4, 4);
		return bpf_map_lookup_elem(trie, &key);
	}
	void *trie = bpf_map_lookup_elem(&net6_rules, &ruleset);
	if (!trie)
		return NULL;
	struct net6_key key = { .prefixlen = 128 };
	__builtin_memcpy(key.addr, ip6, 16);
	if ((ip6[0] | ip6[1] | ip6[2] | ip6[3]) == 0)
		key.addr[15] = 1;
	return bpf_map_lookup_elem(trie, &key);
}

static __always_inline void net_event(__u64 cgroup_id, __u32 action, __u32 ruleset, __u32 rule_id,
				      bool v6, __u32 ip6[4], __u32 port, __u8 proto)
{
	if (action & ACTION_AUDITED)
		count(COUNTER_AUDITED);
	struct event *ev = event_new(cgroup_id, action, ruleset, rule_id);
	if (!ev)
		return;
	ev->family = v6 ? AF_INET6 : AF_INET;
	ev->port = port == PORTLESS ? 0 : port;
	ev->proto = proto;
	if (v6)
		__builtin_memcpy(ev->addr, ip6, 16);
	else
		__builtin_memcpy(ev->addr, &ip6[3], 4);
	bpf_ringbuf_submit(ev, 0);
}

/* The protocol rules see: an MPTCP socket is TCP to them (its subflows are
 * TCP on the wire). */
static __always_inline __u8 rule_proto(__u32 protocol)
{
	return protocol == IPPROTO_MPTCP ? IPPROTO_TCP : (__u8)protocol;
}

/* note_sendmsg records the destination a datagram is sent to for egress
 * (sendmsg_passes): that one was decided here. */
static __always_inline void note_sendmsg(struct bpf_sock_addr *ctx, bool v6)
{
	__u32 zero = 0;
	struct sendmsg_pass *p = bpf_map_lookup_elem(&sendmsg_passes, &zero);

	if (!p)
		return;
	p->cookie = bpf_get_socket_cookie(ctx);
	if (v6) {
		p->ip6[0] = ctx->user_ip6[0];
		p->ip6[1] = ctx->user_ip6[1];
		p->ip6[2] = ctx->user_ip6[2];
		p->ip6[3] = ctx->user_ip6[3];
	} else {
		p->ip6[0] = 0;
		p->ip6[1] = 0;
		p->ip6[2] = bpf_htonl(0xffff);
		p->ip6[3] = ctx->user_ip4;
	}
}

/* forget_sendmsg drops the record of a refused datagram: its destination
 * was not let through, and a later send on the connected socket whose
 * packet NAT rewrote to it must be checked again at egress. */
static __always_inline void forget_sendmsg(void)
{
	__u32 zero = 0;
	struct sendmsg_pass *p = bpf_map_lookup_elem(&sendmsg_passes, &zero);

	if (p)
		p->cookie = 0;
}

/* user_ip6 copies the caller's destination into ip6 (IPv4 in ip6[3], the
 * caller zeroes the rest). */
static __always_inline void user_ip6(struct bpf_sock_addr *ctx, bool v6, __u32 ip6[4])
{
	if (v6) {
		ip6[0] = ctx->user_ip6[0];
		ip6[1] = ctx->user_ip6[1];
		ip6[2] = ctx->user_ip6[2];
		ip6[3] = ctx->user_ip6[3];
	} else {
		ip6[3] = ctx->user_ip4;
	}
}

/* Returns 1 to let the connect/sendmsg through, 0 to fail it with EPERM. */
static __always_inline int check_sock(struct bpf_sock_addr *ctx, bool v6, __u32 action)
{
	struct owner o;

	if (action == ACTION_SENDMSG_REFUSED)
		note_sendmsg(ctx, v6);
	if (!owner_of_current(&o) || !(o.rule->flags & CG_CONNECT))
		return 1;
	count(COUNTER_CONNECT_CHECKED);

	__u32 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 proto = rule_proto(ctx->protocol);
	__u32 ip6[4] = {};

	user_ip6(ctx, v6, ip6);
	struct port_rules *rules = lookup_dest(o.rule->ruleset, v6, ip6);
	if (!rules)
		return 1;
	__u32 rule_id = 0;
	__u8 lineage = (o.rule->flags & CG_ANCESTRY) ? current_lineage() : 0;
	if (!match_ports(rules, o.rule->ruleset, port, proto, lineage, &rule_id))
		return 1;
	if (audited(o.rule->ruleset, rule_id)) {
		/* Let through; a UDP datagram's pass stays for egress. */
		net_event(o.cgroup_id, action | ACTION_AUDITED, o.rule->ruleset, rule_id, v6, ip6, port, proto);
		return 1;
	}
	count(COUNTER_CONNECT_REFUSED);
	if (action == ACTION_SENDMSG_REFUSED)
		forget_sendmsg();
	net_event(o.cgroup_id, action, o.rule->ruleset, rule_id, v6, ip6, port, proto);
	return 0;
}

/* One program per cgroup/<name> hook, each a call of check with ctx and its
 * constants (folded in at compile time). */
#define SOCK_ADDR_PROG(name, check) \
	SEC("cgroup/" #name) \
	int name(struct bpf_sock_addr *ctx) \
	{ \
		return check; \
	}

SOCK_ADDR_PROG(connect4, check_sock(ctx, false, ACTION_CONNECT_REFUSED))
SOCK_ADDR_PROG(connect6, check_sock(ctx, true, ACTION_CONNECT_REFUSED))
SOCK_ADDR_PROG(sendmsg4, check_sock(ctx, false, ACTION_SENDMSG_REFUSED))
SOCK_ADDR_PROG(sendmsg6, check_sock(ctx, true, ACTION_SENDMSG_REFUSED))

/* bind rules: the port the caller asks for (0 for an ephemeral one) against
 * the ruleset's bind port rules. */
static __always_inline int check_bind(struct bpf_sock_addr *ctx, bool v6)
{
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_BIND))
		return 1;
	struct port_rules *rules = bpf_map_lookup_elem(&bind_rules, &o.rule->ruleset);
	if (!rules)
		return 1;
	__u32 port = bpf_ntohs((__u16)ctx->user_port);
	__u8 proto = rule_proto(ctx->protocol);
	__u32 rule_id = 0;
	if (!match_ports(rules, o.rule->ruleset, port, proto, 0, &rule_id))
		return 1;
	__u32 ip6[4] = {};
	user_ip6(ctx, v6, ip6);
	bool audit = audited(o.rule->ruleset, rule_id);

	net_event(o.cgroup_id, ACTION_BIND_REFUSED | (audit ? ACTION_AUDITED : 0), o.rule->ruleset, rule_id, v6, ip6,
		  port, proto);
	return audit;
}

SOCK_ADDR_PROG(bind4, check_bind(ctx, false))
SOCK_ADDR_PROG(bind6, check_bind(ctx, true))

/* socket(): the exact (family, type, protocol), then with any protocol,
 * then any type, then both. */
SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_SOCKET))
		return 1;
	struct socket_key key = {
		.ruleset = o.rule->ruleset,
		.family = (__u16)sk->family,
	};
	__u16 type = (__u16)sk->type, proto = (__u16)sk->protocol;
	__u32 *rule_id = NULL;
	for (int i = 0; i < 4; i++) {
		key.type = (i & 2) ? SOCKET_ANY : type;
		key.protocol = (i & 1) ? SOCKET_ANY : proto;
		rule_id = bpf_map_lookup_elem(&socket_rules, &key);
		if (rule_id)
			break;
	}
	if (!rule_id)
		return 1;
	bool audit = audited(o.rule->ruleset, *rule_id);

	if (audit)
		count(COUNTER_AUDITED);
	struct event *ev = event_new(o.cgroup_id, ACTION_SOCKET_REFUSED | (audit ? ACTION_AUDITED : 0), o.rule->ruleset,
				     *rule_id);
	if (ev) {
		ev->family = key.family;
		ev->proto = (__u8)proto;
		ev->port = type; /* socket events carry the type here */
		bpf_ringbuf_submit(ev, 0);
	}
	return audit;
}

/* Packet sockets. AF_PACKET sockets never reach cgroup/sock_create (only
 * inet_create and inet6_create run it), and their frames bypass the IP
 * egress hooks, so a packet rule kills the caller on entry to the system
 * call, like exec's kill mode: no instruction of the caller runs after it.
 * The raw sys_enter tracepoint sees every ABI's calls (the syscalls/
 * tracepoints miss ia32 ones): x86-64 and x32 socket, ia32 socket and
 * socketcall(SYS_SOCKET). io_uring_setup is killed too in a container
 * whose rules deny packet sockets: IORING_OP_SOCKET makes one inside the
 * kernel, and a ring runs linked operations on it before the submitter
 * dies. */
#define NR_SOCKET 41
#define NR_IO_URING_SETUP 425 /* the same number for ia32 */
#define X32_SYSCALL_BIT 0x40000000
#define NR32_SOCKETCALL 102
#define NR32_SOCKET 359
#define SYS_SOCKET 1

/* socket_call says whether system call id may make a packet socket. The
 * number test is all that other system calls pay. */
static __always_inline bool socket_call(long id)
{
	switch (id) {
	case NR_SOCKET:
	case NR_SOCKET | X32_SYSCALL_BIT:
	case NR_IO_URING_SETUP:
	case NR_IO_URING_SETUP | X32_SYSCALL_BIT:
	case NR32_SOCKETCALL:
	case NR32_SOCKET:
		return true;
	}
	return false;
}

static __always_inline bool packet_family(__u64 family, __u64 type)
{
	/* socket(AF_INET, SOCK_PACKET) is the legacy spelling of AF_PACKET;
	 * the type without SOCK_NONBLOCK and SOCK_CLOEXEC. */
	return family == AF_PACKET || (family == AF_INET && (type & 0xf) == SOCK_PACKET);
}

/* packet_socket_enter kills the caller of a system call that would make a
 * packet socket (or an io_uring) in a container whose rules deny packet
 * sockets. */
static __always_inline void packet_socket_enter(struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	bool compat = task->thread_info.status & TS_COMPAT;
	__u64 family = AF_PACKET, type = 0, protocol = 0;
	bool uring = false;

	if (!compat && (id == NR_IO_URING_SETUP || id == (NR_IO_URING_SETUP | X32_SYSCALL_BIT))) {
		uring = true;
	} else if (compat && id == NR_IO_URING_SETUP) {
		uring = true;
	} else if (!compat && (id == NR_SOCKET || id == (NR_SOCKET | X32_SYSCALL_BIT))) {
		family = regs->di;
		type = regs->si;
		protocol = regs->dx;
	} else if (compat && id == NR32_SOCKET) {
		family = (__u32)regs->bx;
		type = (__u32)regs->cx;
		protocol = (__u32)regs->dx;
	} else if (compat && id == NR32_SOCKETCALL) {
		__u32 args[3];

		if ((__u32)regs->bx != SYS_SOCKET)
			return;
		/* Arguments in user memory; not resident, they cannot be read
		 * here (the kernel will fault them in): taken as AF_PACKET. */
		if (bpf_probe_read_user(args, sizeof(args), (void *)(__u64)(__u32)regs->cx) == 0) {
			family = args[0];
			type = args[1];
			protocol = args[2];
		}
	} else {
		return;
	}
	if (!uring && !packet_family(family, type))
		return;
	struct owner o;
	if (!owner_of_current(&o) || !(o.rule->flags & CG_SOCKET))
		return;
	struct socket_key key = {
		.ruleset = o.rule->ruleset,
		.family = AF_PACKET,
		.type = SOCKET_ANY,
		.protocol = SOCKET_ANY,
	};
	__u32 *rule_id = bpf_map_lookup_elem(&socket_rules, &key);
	if (!rule_id)
		return;
	__u32 rid = *rule_id;
	__u32 action = ACTION_SOCKET_KILLED;

	if (audited(o.rule->ruleset, rid)) {
		count(COUNTER_AUDITED);
		action |= ACTION_AUDITED;
	} else {
		bpf_send_signal(SIGKILL);
		kill_sharers(task, SHARED_FILES);
	}
	struct event *ev = event_new(o.cgroup_id, action, o.rule->ruleset, rid);
	if (ev) {
		ev->family = (__u16)family;
		ev->port = (__u16)(type & 0xf);
		ev->proto = (__u8)protocol;
		if (uring)
			__builtin_memcpy(ev->filename, "io_uring_setup", sizeof("io_uring_setup"));
		bpf_ringbuf_submit(ev, 0);
	}
}

/* In lsm mode, where mmap_kill (which runs packet_socket_enter in kill
 * mode) is not attached. */
SEC("tp_btf/sys_enter")
int BPF_PROG(socket_kill, struct pt_regs *regs, long id)
{
	if (socket_call(id))
		packet_socket_enter(regs, id);
	return 0;
}

/* The registered cgroup of a packet's socket: like owner_of_current, the
 * socket's own cgroup or its nearest registered ancestor. */
static __always_inline bool owner_of_skb(struct __sk_buff *skb, struct owner *o)
{
	__u64 id = bpf_skb_cgroup_id(skb);

	if (owner_first(o, id))
		return true;
	for (int level = 1; level < MAX_CGROUP_LEVEL; level++) {
		__u64 anc = bpf_skb_ancestor_cgroup_id(skb, level);
		if (anc == 0 || anc == id)
			break;
		owner_try(o, anc);
	}
	return o->rule != NULL;
}

/* IPv6 extension headers walked to find the transport header. */
#define MAX_EXT_HEADERS 8
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

/* addressed_to_peer says whether a TCP or UDP packet goes to its socket's
 * own peer, the destination connect4/6 checked, or for UDP to the
 * destination sendmsg4/6 just checked. Only NAT after those hooks (a nat
 * rule in the workload's own network namespace) makes them differ. Replies
 * to inbound connections go to the peer. */
static __always_inline bool addressed_to_peer(struct __sk_buff *skb, struct bpf_sock *sk, bool udp)
{
	__u32 d[4] = {};

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, 16, &d[3], 4))
			return true; /* no IP header: nothing to route */
		if (d[3] == sk->dst_ip4)
			return true;
		d[2] = bpf_htonl(0xffff);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 24, d, sizeof(d)))
			return true;
		if (d[0] == sk->dst_ip6[0] && d[1] == sk->dst_ip6[1] && d[2] == sk->dst_ip6[2] &&
		    d[3] == sk->dst_ip6[3])
			return true;
	} else {
		return true;
	}
	if (!udp)
		return false;
	/* An unconnected socket has no peer: the datagram sendmsg4/6 passed a
	 * moment ago on this CPU, unless NAT changed its destination. */
	__u32 zero = 0;
	struct sendmsg_pass *p = bpf_map_lookup_elem(&sendmsg_passes, &zero);
	return p && p->ip6[3] == d[3] && p->ip6[2] == d[2] && p->ip6[1] == d[1] && p->ip6[0] == d[0] &&
	       p->cookie == bpf_get_socket_cookie(skb);
}

/* Egress packets, checked against the connect rules: those of sockets the
 * sock_addr hooks do not decide for (raw, ping, SCTP, ...), and TCP and UDP
 * packets whose destination is not the one those hooks checked. It runs
 * after the OUTPUT and POSTROUTING netfilter hooks, so it sees the address
 * NAT chose. */
SEC("cgroup_skb/egress")
int egress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	__u32 type = sk->type, sproto = sk->protocol;
	/* No process here to read ancestor classes of. Packets of raw, ping
	 * and SCTP sockets (an attacker's tools rather than a workload's
	 * usual traffic) fail closed: scoped rules apply to them whoever sent
	 * them. A TCP or UDP packet rewritten by NAT leaves them out. */
	__u8 lineage = LINEAGE_LOST;
	if (type == SOCK_STREAM && sproto == IPPROTO_TCP) {
		lineage = 0;
		/* A listener sends the SYN-ACKs of its request sockets: replies. */
		if (sk->state == BPF_TCP_LISTEN || addressed_to_peer(skb, sk, false))
			return 1;
	} else if (type == SOCK_DGRAM && sproto == IPPROTO_UDP) {
		lineage = 0;
		if (addressed_to_peer(skb, sk, true))
			return 1;
	}

	struct owner o;
	if (!owner_of_skb(skb, &o) || !(o.rule->flags & CG_CONNECT))
		return 1;

	__u32 ip6[4] = {};
	__u32 l4 = 0, port = PORTLESS;
	__u8 proto = 0;
	bool v6 = skb->protocol == bpf_htons(ETH_P_IPV6);
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 h[20];
		if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
			return 1;
		proto = h[9];
		__builtin_memcpy(&ip6[3], &h[16], 4);
		l4 = (h[0] & 0xf) * 4;
		if (((h[6] & 0x1f) | h[7]) != 0) /* not the first fragment */
			l4 = 0;
	} else if (v6) {
		__u8 h[40];
		if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
			return 1;
		proto = h[6];
		__builtin_memcpy(ip6, &h[24], 16);
		l4 = 40;
		for (int i = 0; i < MAX_EXT_HEADERS; i++) {
			__u8 ext[4];
			if (proto != NEXTHDR_HOP && proto != NEXTHDR_ROUTING && proto != NEXTHDR_FRAGMENT &&
			    proto != NEXTHDR_AUTH && proto != NEXTHDR_DEST)
				break;
			if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext))) {
				l4 = 0;
				break;
			}
			__u8 next = ext[0];
			if (proto == NEXTHDR_FRAGMENT) {
				if (((ext[2] << 8 | ext[3]) & 0xfff8) != 0) {
					l4 = 0; /* not the first fragment */
					proto = next;
					break;
				}
				l4 += 8;
			} else if (proto == NEXTHDR_AUTH) {
				l4 += (ext[1] + 2) * 4;
			} else {
				l4 += (ext[1] + 1) * 8;
			}
			proto = next;
		}
	} else {
		return 1;
	}
	if (l4 && (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP)) {
		__u8 ports[4];
		if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)) == 0)
			port = (ports[2] << 8) | ports[3];
	}
	count(COUNTER_CONNECT_CHECKED);
	struct port_rules *rules = lookup_dest(o.rule->ruleset, v6, ip6);
	if (!rules)
		return 1;
	__u32 rule_id = 0;
	if (!match_ports(rules, o.rule->ruleset, port, proto, lineage, &rule_id))
		return 1;
	if (audited(o.rule->ruleset, rule_id)) {
		net_event(o.cgroup_id, ACTION_PACKET_DROPPED | ACTION_AUDITED, o.rule->ruleset, rule_id, v6, ip6, port,
			  proto);
		return 1;
	}
	count(COUNTER_CONNECT_REFUSED);
	net_event(o.cgroup_id, ACTION_PACKET_DROPPED, o.rule->ruleset, rule_id, v6, ip6, port, proto);
	return 0;
}

#endif
