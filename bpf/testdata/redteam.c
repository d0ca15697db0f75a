// redteam does what a hostile workload does to get around holdfast, for
// redteam_test.go and redteam2_test.go. Each mode prints one result line.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <pthread.h>

// compat issues an ia32 system call (int 0x80) from this 64-bit process.
// Built with -mno-red-zone, since it pushes.
static long compat(long nr, long a, long b, long c)
{
	int ret;
	__asm__ volatile("push %%rbp\n\txor %%ebp, %%ebp\n\tint $0x80\n\tpop %%rbp"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(0), "D"(0)
			 : "memory");
	return ret;
}

static int fail(const char *what)
{
	printf("ERR %s: %s\n", what, strerror(errno));
	return 1;
}

// neg_errno turns a raw -errno result into -1 with errno set.
static int neg_errno(long r)
{
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

// exec_as execs bin with argv {arg0}; it returns only on failure.
static int exec_as(const char *bin, char *arg0)
{
	char *args[] = {arg0, NULL};
	execv(bin, args);
	return fail("execv");
}

// execveat_as execveat(2)s name relative to fd with argv {arg0} and no
// environment; it returns only on failure.
static int execveat_as(int fd, const char *name, char *arg0, int flags)
{
	char *args[] = {arg0, NULL};
	char *env[] = {NULL};
	syscall(SYS_execveat, fd, name, args, env, flags);
	return fail("execveat");
}

// write_pid writes this process's pid to the cgroup.procs file procs,
// moving it there; -1 with errno on failure.
static int write_pid(const char *procs)
{
	int fd = open(procs, O_WRONLY);
	if (fd < 0)
		return -1;
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	int w = write(fd, pid, n);
	int err = errno;
	close(fd);
	if (w != n) {
		errno = w < 0 ? err : EIO;
		return -1;
	}
	return 0;
}

// write_file writes value to the (proc) file path; -1 with errno on failure.
static int write_file(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	size_t n = strlen(value);
	int ok = write(fd, value, n) == (ssize_t)n;
	close(fd);
	return ok ? 0 : -1;
}

// One io_uring operation, submitted and reaped; returns its result.
static int uring_op(const struct io_uring_sqe *tmpl)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int rfd = syscall(__NR_io_uring_setup, 4, &p);
	if (rfd < 0)
		return -errno;
	size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP && cqsz > sqsz)
		sqsz = cqsz;
	char *sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQ_RING);
	if (sq == MAP_FAILED)
		return -errno;
	char *cq = sq;
	if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
		cq = mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_CQ_RING);
		if (cq == MAP_FAILED)
			return -errno;
	}
	struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof(*sqes), PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_POPULATE, rfd, IORING_OFF_SQES);
	if (sqes == MAP_FAILED)
		return -errno;
	unsigned *tail = (unsigned *)(sq + p.sq_off.tail);
	unsigned mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	unsigned *array = (unsigned *)(sq + p.sq_off.array);
	unsigned t = *tail, idx = t & mask;
	sqes[idx] = *tmpl;
	array[idx] = idx;
	__atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, rfd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
		return -errno;
	unsigned head = __atomic_load_n((unsigned *)(cq + p.cq_off.head), __ATOMIC_ACQUIRE);
	unsigned cmask = *(unsigned *)(cq + p.cq_off.ring_mask);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	return cqes[head & cmask].res;
}

// uring_sqe is an io_uring submission of op on fd.
static struct io_uring_sqe uring_sqe(int op, int fd, unsigned long addr, unsigned len, unsigned long off)
{
	struct io_uring_sqe sqe;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = op;
	sqe.fd = fd;
	sqe.addr = addr;
	sqe.len = len;
	sqe.off = off;
	return sqe;
}

static char child_stack[64 * 1024] __attribute__((aligned(16)));

static int packet_child(void *arg)
{
	(void)arg;
	int fd = socket(AF_PACKET, SOCK_RAW, 0);
	_exit(fd < 0 ? 1 : 0);
}

// packet_socket gets an AF_PACKET socket by route; -1 with errno on failure.
static int packet_socket(const char *route)
{
	if (!strcmp(route, "direct"))
		return socket(AF_PACKET, SOCK_RAW, 0);
	if (!strcmp(route, "io-uring")) {
		// IORING_OP_SOCKET: fd is the domain, off the type, len the protocol.
		struct io_uring_sqe sqe = uring_sqe(IORING_OP_SOCKET, AF_PACKET, 0, 0, SOCK_RAW);
		return neg_errno(uring_op(&sqe));
	}
	if (!strcmp(route, "ia32-socket"))
		return neg_errno(compat(359, AF_PACKET, SOCK_RAW, 0));
	if (!strcmp(route, "ia32-socketcall")) {
		// socketcall takes a pointer to its arguments: below 4 GiB.
		uint32_t *args = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
		if (args == MAP_FAILED)
			return -1;
		args[0] = AF_PACKET;
		args[1] = SOCK_RAW;
		args[2] = 0;
		return neg_errno(compat(102, 1 /* SYS_SOCKET */, (long)args, 0));
	}
	if (!strcmp(route, "clone-files")) {
		// A process sharing our fd table (not our thread group) makes it;
		// it is killed, the fd stays in the shared table.
		int probe = dup(0);
		if (probe < 0)
			return -1;
		close(probe); // the child's socket() gets this number
		pid_t pid = clone(packet_child, child_stack + sizeof(child_stack), CLONE_FILES | SIGCHLD, NULL);
		if (pid < 0)
			return -1;
		int st;
		if (waitpid(pid, &st, 0) < 0)
			return -1;
		int domain = 0;
		socklen_t len = sizeof(domain);
		if (getsockopt(probe, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 || domain != AF_PACKET) {
			errno = ENOENT;
			return -1;
		}
		return probe;
	}
	errno = EINVAL;
	return -1;
}

static uint16_t csum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (b[i] << 8) | b[i + 1];
	if (n & 1)
		s += b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s;
}

static void pin_cpu(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, &set)) {
			CPU_ZERO(&set);
			CPU_SET(c, &set);
			sched_setaffinity(0, sizeof(set), &set);
			return;
		}
	}
}

// lo_up brings up lo in this network namespace.
static int lo_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return -1;
	close(s);
	return 0;
}

// own_netns moves this process into a network namespace of its own with lo
// up; 1 (after printing why) on failure.
static int own_netns(void)
{
	if (unshare(CLONE_NEWNET))
		return fail("unshare net");
	if (lo_up())
		return fail("lo up");
	return 0;
}

// nft_dnat has nft rewrite this namespace's output to via into denied;
// 1 (after printing why) on failure.
static int nft_dnat(const char *nft, const char *via, const char *denied)
{
	char rules[512];
	snprintf(rules, sizeof(rules),
		 "add table ip hf\n"
		 "add chain ip hf out { type nat hook output priority -100; }\n"
		 "add rule ip hf out ip daddr %s dnat to %s\n",
		 via, denied);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "%s -f -", nft);
	FILE *f = popen(cmd, "w");
	if (!f)
		return fail("popen nft");
	fputs(rules, f);
	int rc = pclose(f);
	if (rc != 0) {
		printf("ERR nft: %d\n", rc);
		return 1;
	}
	return 0;
}

// report_arrival prints ARRIVED if want reached rcv, else NOT-ARRIVED. A
// marker datagram mrk sends to itself (bound to ma) on the same CPU first
// proves a delivered datagram is queued by the time rcv is read.
static int report_arrival(int rcv, int mrk, const struct sockaddr_in *ma, const void *want, size_t n)
{
	if (sendto(mrk, "m", 1, 0, (const struct sockaddr *)ma, sizeof(*ma)) < 0)
		return fail("marker sendto");
	struct timeval tv = {.tv_sec = 30}; // bounds a broken run only
	setsockopt(mrk, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char buf[256];
	if (recv(mrk, buf, sizeof(buf), 0) < 0)
		return fail("marker recv");
	bool arrived = false;
	for (;;) {
		ssize_t got = recv(rcv, buf, sizeof(buf), MSG_DONTWAIT);
		if (got < 0)
			break;
		if ((size_t)got == n && !memcmp(buf, want, n))
			arrived = true;
	}
	printf(arrived ? "ARRIVED\n" : "NOT-ARRIVED\n");
	return 0;
}

// packet ROUTE DSTIP: in a network namespace of its own (a container has
// one), get a packet socket by ROUTE and send an IPv4 UDP frame on lo to a
// UDP socket bound to DSTIP. Prints SENT and ARRIVED or NOT-ARRIVED. A
// marker datagram sent after it on the same CPU proves the frame, if it
// was delivered, is queued when the receiver is read.
static int packet_mode(char **argv)
{
	const char *route = argv[0], *dst = argv[1];
	const char nonce[] = "holdfast-redteam-frame";
	if (own_netns())
		return 1;
	// Injected frames are routed on input, where loopback addresses and
	// a local source are martians unless these say otherwise.
	static const char *const sysctls[][2] = {
		{"/proc/sys/net/ipv4/conf/lo/route_localnet", "1"},
		{"/proc/sys/net/ipv4/conf/lo/accept_local", "1"},
		{"/proc/sys/net/ipv4/conf/all/accept_local", "1"},
		{"/proc/sys/net/ipv4/conf/lo/rp_filter", "0"},
		{"/proc/sys/net/ipv4/conf/all/rp_filter", "0"},
	};
	for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		if (write_file(sysctls[i][0], sysctls[i][1]))
			return fail(sysctls[i][0]);
	pin_cpu();
	int rcv = socket(AF_INET, SOCK_DGRAM, 0), mrk = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in ra = {.sin_family = AF_INET}, ma = {.sin_family = AF_INET};
	inet_pton(AF_INET, dst, &ra.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &ma.sin_addr);
	socklen_t len = sizeof(ra);
	if (bind(rcv, (struct sockaddr *)&ra, sizeof(ra)) || getsockname(rcv, (struct sockaddr *)&ra, &len))
		return fail("bind receiver");
	len = sizeof(ma);
	if (bind(mrk, (struct sockaddr *)&ma, sizeof(ma)) || getsockname(mrk, (struct sockaddr *)&ma, &len))
		return fail("bind marker");

	int fd = packet_socket(route);
	if (fd < 0) {
		printf("ERR %s packet socket: %s\n", route, strerror(errno));
		return 0;
	}
	uint8_t f[14 + 20 + 8 + sizeof(nonce)];
	size_t plen = sizeof(nonce);
	memset(f, 0, sizeof(f));
	f[12] = 0x08; // ETH_P_IP
	uint8_t *ip = f + 14, *udp = ip + 20;
	ip[0] = 0x45;
	uint16_t tot = htons(20 + 8 + plen);
	memcpy(ip + 2, &tot, 2);
	ip[6] = 0x40; // DF
	ip[8] = 64;
	ip[9] = IPPROTO_UDP;
	inet_pton(AF_INET, "127.0.0.9", ip + 12); // not an interface address
	memcpy(ip + 16, &ra.sin_addr, 4);
	uint16_t c = htons(csum(ip, 20));
	memcpy(ip + 10, &c, 2);
	uint16_t sport = htons(40000), ulen = htons(8 + plen);
	memcpy(udp, &sport, 2);
	memcpy(udp + 2, &ra.sin_port, 2);
	memcpy(udp + 4, &ulen, 2);
	memcpy(udp + 8, nonce, plen);
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET,
		.sll_protocol = htons(ETH_P_IP),
		.sll_ifindex = if_nametoindex("lo"),
		.sll_halen = 6,
	};
	if (sendto(fd, f, sizeof(f), 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
		return fail("sendto");
	printf("SENT\n");
	return report_arrival(rcv, mrk, &ma, nonce, plen);
}

// dnat NFT DENIED VIA: in a network namespace of its own (as a container
// with CAP_NET_ADMIN has), listen on DENIED, rewrite connects to VIA into
// DENIED with a nat rule, and connect to VIA. VIA "-" connects to DENIED.
static int dnat_mode(char **argv)
{
	const char *nft = argv[0], *denied = argv[1], *via = argv[2];
	if (own_netns())
		return 1;
	// A SYN that egress drops is retried for about two minutes; one retry
	// in this namespace of its own is enough to tell.
	if (write_file("/proc/sys/net/ipv4/tcp_syn_retries", "1\n"))
		return fail("tcp_syn_retries");
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, denied, &sa.sin_addr);
	if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 4))
		return fail("listen");
	socklen_t len = sizeof(sa);
	getsockname(l, (struct sockaddr *)&sa, &len);
	if (strcmp(via, "-")) {
		if (nft_dnat(nft, via, denied))
			return 1;
		inet_pton(AF_INET, via, &sa.sin_addr);
	}
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		// The peer the connection reached.
		struct sockaddr_in peer;
		len = sizeof(peer);
		int a = accept(l, (struct sockaddr *)&peer, &len);
		struct sockaddr_in local;
		len = sizeof(local);
		getsockname(a, (struct sockaddr *)&local, &len);
		char buf[INET_ADDRSTRLEN];
		printf("OK %s\n", inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf)));
		return 0;
	}
	printf(errno == EPERM ? "EPERM\n" : "ERR connect: %s\n", strerror(errno));
	return 0;
}

// move-exec PROCS BIN ARG0: move this process by writing its pid to PROCS
// (a cgroup.procs file), then exec BIN as ARG0.
static int move_exec_mode(char **argv)
{
	if (write_pid(argv[0]))
		return fail("write cgroup.procs");
	printf("MOVED\n");
	return exec_as(argv[1], argv[2]);
}

// execfd rdonly|path BIN ARG0: execveat(fd, "", AT_EMPTY_PATH) of BIN
// opened O_RDONLY or O_PATH (fexecve).
static int execfd_mode(char **argv)
{
	int fd = open(argv[1], (!strcmp(argv[0], "path") ? O_PATH : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return fail("open");
	return execveat_as(fd, "", argv[2], AT_EMPTY_PATH);
}

static void result(int r)
{
	if (r >= 0)
		printf("OK\n");
	else if (errno == EPERM)
		printf("EPERM\n");
	else
		printf("ERR %s\n", strerror(errno));
}

// net KIND IP PORT: one connect or UDP send to IP:PORT the way KIND says.
static int net_mode(char **argv)
{
	const char *kind = argv[0];
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &sa.sin_addr);
	struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = sa.sin_port};
	sa6.sin6_addr.s6_addr[10] = 0xff;
	sa6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sa6.sin6_addr.s6_addr[12], &sa.sin_addr, 4);
	if (!strcmp(kind, "tfo")) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		int r = sendto(fd, "x", 1, MSG_FASTOPEN, (struct sockaddr *)&sa, sizeof(sa));
		result(r);
		return 0;
	}
	if (!strcmp(kind, "uring-connect")) {
		// IORING_OP_CONNECT: off is the address length.
		struct io_uring_sqe sqe =
			uring_sqe(IORING_OP_CONNECT, socket(AF_INET, SOCK_STREAM, 0), (unsigned long)&sa, 0, sizeof(sa));
		result(neg_errno(uring_op(&sqe)));
		return 0;
	}
	struct iovec iov = {.iov_base = "x", .iov_len = 1};
	struct msghdr m = {.msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov, .msg_iovlen = 1};
	if (!strcmp(kind, "uring-sendmsg")) {
		struct io_uring_sqe sqe =
			uring_sqe(IORING_OP_SENDMSG, socket(AF_INET, SOCK_DGRAM, 0), (unsigned long)&m, 1, 0);
		result(neg_errno(uring_op(&sqe)));
		return 0;
	}
	if (!strcmp(kind, "sendmmsg")) {
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		struct mmsghdr mm[2] = {{.msg_hdr = m}, {.msg_hdr = m}};
		result(sendmmsg(fd, mm, 2, 0) > 0 ? 0 : -1);
		return 0;
	}
	if (!strcmp(kind, "udp-connect")) {
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		result(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
		return 0;
	}
	if (!strcmp(kind, "pktinfo")) {
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		char cbuf[CMSG_SPACE(sizeof(struct in_pktinfo))];
		memset(cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = IPPROTO_IP;
		c->cmsg_type = IP_PKTINFO;
		c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
		struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(c);
		inet_pton(AF_INET, "127.0.0.1", &pi->ipi_spec_dst);
		pi->ipi_addr = sa.sin_addr;
		result(sendmsg(fd, &m, 0));
		return 0;
	}
	if (!strcmp(kind, "dualstack-tcp") || !strcmp(kind, "dualstack-udp")) {
		int udp = !strcmp(kind, "dualstack-udp");
		int fd = socket(AF_INET6, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
		int off = 0;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		if (udp)
			result(sendto(fd, "x", 1, 0, (struct sockaddr *)&sa6, sizeof(sa6)));
		else
			result(connect(fd, (struct sockaddr *)&sa6, sizeof(sa6)));
		return 0;
	}
	fprintf(stderr, "unknown net kind %s\n", kind);
	return 2;
}

static const char *vm_lib;
static volatile void *vm_addr;

static int vm_child(void *arg)
{
	(void)arg;
	int fd = open(vm_lib, O_RDONLY);
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	vm_addr = p == MAP_FAILED ? NULL : p;
	_exit(0);
}

// vm-mmap LIB: a process sharing our address space (clone CLONE_VM, not a
// thread) maps LIB executable and is killed for it; prints MAPPED when the
// executable mapping of LIB is left in the shared address space.
static int vm_mmap_mode(char **argv)
{
	vm_lib = argv[0];
	pid_t pid = clone(vm_child, child_stack + sizeof(child_stack), CLONE_VM | SIGCHLD, NULL);
	if (pid < 0)
		return fail("clone");
	int st;
	waitpid(pid, &st, 0);
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	bool mapped = false;
	while (maps && fgets(line, sizeof(line), maps))
		if (strstr(line, vm_lib) && strchr(line, 'x') && strchr(line, 'x') < strchr(line, ' ') + 5)
			mapped = true;
	printf("%s child %s\n", mapped ? "MAPPED" : "NOT-MAPPED", WIFSIGNALED(st) ? "killed" : "exited");
	return 0;
}

// uring-move PROCS BIN ARG0: move this process by writing its pid to PROCS
// (a cgroup.procs file) from an io_uring worker (IOSQE_ASYNC), then exec
// BIN as ARG0.
static int uring_move_mode(char **argv)
{
	int fd = open(argv[0], O_WRONLY);
	if (fd < 0)
		return fail("open cgroup.procs");
	static char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	// off -1: the file's current position.
	struct io_uring_sqe sqe = uring_sqe(IORING_OP_WRITE, fd, (unsigned long)pid, n, -1);
	sqe.flags = IOSQE_ASYNC;
	int r = uring_op(&sqe);
	if (r != n) {
		errno = r < 0 ? -r : EIO;
		return fail("io_uring write cgroup.procs");
	}
	printf("MOVED\n");
	return exec_as(argv[1], argv[2]);
}

// tree-exec DIR NAME ARG0: clone the mount at DIR as a detached tree
// (open_tree OPEN_TREE_CLONE) and exec NAME inside it (execveat).
static int tree_exec_mode(char **argv)
{
	int fd = syscall(SYS_open_tree, AT_FDCWD, argv[0], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (fd < 0)
		return fail("open_tree");
	return execveat_as(fd, argv[1], argv[2], 0);
}

static int udp_bound(const char *ip, struct sockaddr_in *sa)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sa->sin_addr);
	if (s < 0 || bind(s, (struct sockaddr *)sa, sizeof(*sa)))
		return -1;
	socklen_t len = sizeof(*sa);
	getsockname(s, (struct sockaddr *)sa, &len);
	return s;
}

// udp-nat NFT DENIED VIA prime|plain: in a network namespace of its own,
// bind a UDP receiver on DENIED, rewrite datagrams to VIA into DENIED with
// a nat rule, connect a UDP socket to VIA and send on it (no address: the
// sendmsg hook does not run). With prime, a sendto DENIED on the same
// socket (refused) comes first. Prints the send result and ARRIVED or
// NOT-ARRIVED; a marker datagram sent after it on the same CPU proves the
// first one, if delivered, is queued when the receiver is read.
static int udp_nat_mode(char **argv)
{
	const char *nft = argv[0], *denied = argv[1], *via = argv[2];
	bool prime = !strcmp(argv[3], "prime");
	pin_cpu();
	if (own_netns())
		return 1;
	struct sockaddr_in rsa, msa;
	int r = udp_bound(denied, &rsa);
	int m = udp_bound("127.0.0.1", &msa);
	if (r < 0 || m < 0)
		return fail("bind receivers");
	if (nft_dnat(nft, via, denied))
		return 1;
	int c = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in vsa = rsa;
	inet_pton(AF_INET, via, &vsa.sin_addr);
	if (connect(c, (struct sockaddr *)&vsa, sizeof(vsa)))
		return fail("connect");
	if (prime) {
		if (sendto(c, "prime", 5, 0, (struct sockaddr *)&rsa, sizeof(rsa)) == 5) {
			printf("ERR prime: sendto the denied address was let through\n");
			return 1;
		}
		printf("PRIME %s\n", errno == EPERM ? "EPERM" : strerror(errno));
	}
	printf(send(c, "secret", 6, 0) == 6 ? "SENT\n" : "SEND %s\n", strerror(errno));
	return report_arrival(r, m, &msa, "secret", 6);
}

// clone3-exec CGDIR BIN ARG0: start a child in CGDIR (clone3
// CLONE_INTO_CGROUP) that execs BIN as ARG0; prints how it ended.
static int clone3_exec_mode(char **argv)
{
	int cg = open(argv[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0)
		return fail("open cgroup");
	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_INTO_CGROUP;
	ca.exit_signal = SIGCHLD;
	ca.cgroup = cg;
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0)
		return fail("clone3");
	if (pid == 0) {
		char *args[] = {argv[2], NULL};
		execv(argv[1], args);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return fail("waitpid");
	if (WIFSIGNALED(st))
		printf("CHILD SIGNAL %d\n", WTERMSIG(st));
	else
		printf("CHILD EXIT %d\n", WEXITSTATUS(st));
	return 0;
}

static const char *thread_procs;
static int thread_err;

static void *mover(void *arg)
{
	if (write_pid(thread_procs))
		thread_err = errno ? errno : EIO;
	return NULL;
}

// thread-move PROCS BIN ARG0: a second thread moves the process by writing
// its pid to PROCS, then the main thread execs BIN as ARG0.
static int thread_move_mode(char **argv)
{
	pthread_t th;
	thread_procs = argv[0];
	if (pthread_create(&th, NULL, mover, NULL) || pthread_join(th, NULL))
		return fail("thread");
	if (thread_err) {
		errno = thread_err;
		return fail("write cgroup.procs");
	}
	printf("MOVED\n");
	return exec_as(argv[1], argv[2]);
}

// The modes, by name, with the number of arguments each takes.
static const struct {
	const char *name;
	int nargs;
	int (*run)(char **argv);
} modes[] = {
	{"packet", 2, packet_mode},
	{"dnat", 3, dnat_mode},
	{"move-exec", 3, move_exec_mode},
	{"vm-mmap", 1, vm_mmap_mode},
	{"execfd", 3, execfd_mode},
	{"net", 3, net_mode},
	{"uring-move", 3, uring_move_mode},
	{"tree-exec", 3, tree_exec_mode},
	{"clone3-exec", 3, clone3_exec_mode},
	{"thread-move", 3, thread_move_mode},
	{"udp-nat", 4, udp_nat_mode},
};

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	for (size_t i = 0; argc >= 2 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name) && argc == modes[i].nargs + 2)
			return modes[i].run(argv + 2);
	fprintf(stderr, "usage: redteam packet|dnat|move-exec|vm-mmap|execfd|net|uring-move|tree-exec|clone3-exec|thread-move|udp-nat ARGS...\n");
	return 2;
}
