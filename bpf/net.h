/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Network control: cgroup sock_addr hooks refuse connects and UDP sends to
 * denied destinations with EPERM. */
#ifndef HOLDFAST_NET_H
#define HOLDFAST_NET_H

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
	struct owner o;

	if (!owner_of_current(&o) || !(o.rule->flags & CG_CONNECT))
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
	/* ::ffff:a.b.c.d is IPv4 on the wire: the v4 rules decide. The
	 * unspecified address is checked as the loopback address the kernel
	 * turns it into after these hooks ran (0.0.0.0, ::ffff:0.0.0.0 and ::). */
	if (!v6 || (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0xffff))) {
		struct net4_key key = { .prefixlen = 32 + 32, .ruleset = o.rule->ruleset };
		__u32 ip4 = v6 ? ip6[3] : ctx->user_ip4;
		if (ip4 == 0)
			ip4 = bpf_htonl(0x7f000001);
		__builtin_memcpy(key.addr, &ip4, 4);
		rules = bpf_map_lookup_elem(&net4_rules, &key);
	} else {
		struct net6_key key = { .prefixlen = 32 + 128, .ruleset = o.rule->ruleset };
		if ((ip6[0] | ip6[1] | ip6[2] | ip6[3]) == 0)
			ip6[3] = bpf_htonl(1);
		__builtin_memcpy(key.addr, ip6, 16);
		rules = bpf_map_lookup_elem(&net6_rules, &key);
		ip6[3] = ctx->user_ip6[3]; /* the event shows what the caller gave */
	}
	if (!rules)
		return 1;

	__u32 rule_id = 0;
	if (!match_ports(rules, port, proto, &rule_id))
		return 1;
	count(COUNTER_CONNECT_REFUSED);

	struct event *ev = event_new(o.cgroup_id, action, o.rule->ruleset, rule_id);
	if (!ev)
		return 0;
	ev->family = v6 ? AF_INET6 : AF_INET;
	ev->port = port;
	ev->proto = proto;
	if (v6) {
		__builtin_memcpy(ev->addr, ip6, 16);
	} else {
		__u32 ip4 = ctx->user_ip4;
		__builtin_memcpy(ev->addr, &ip4, 4);
	}
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

#endif
