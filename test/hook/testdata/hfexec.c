// hfexec runs a file the ways a workload can get around a name-based rule,
// for the end-to-end tests. Each exec mode replaces this process, so the
// caller sees the target's exit status or death by SIGKILL (137); the map
// modes print "OK" once the file is mapped executable.
//
//	written SRC DST    copy SRC's bytes to a new file DST (0755), exec it
//	memfd SRC          SRC's bytes in a memfd, execveat(AT_EMPTY_PATH)
//	memfd-proc SRC     the same through /proc/self/fd/N
//	procfd PATH        open PATH, exec /proc/self/fd/N
//	deep N SRC         copy SRC N directories deep, exec it by a relative path
//	dlopen LIB         dlopen LIB
//	mmap PATH          mmap PATH with PROT_EXEC
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static int fail(const char *what)
{
	fprintf(stderr, "hfexec: %s: %s\n", what, strerror(errno));
	return 1;
}

// copy writes src's bytes to the open fd.
static int copy(const char *src, int fd)
{
	char buf[65536];
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return fail("open source");
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0)
			return fail("read source");
		if (n == 0)
			break;
		if (write(fd, buf, n) != n)
			return fail("write copy");
	}
	close(in);
	return 0;
}

static int exec_fd_path(int fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	char *argv[] = {path, NULL};
	execve(path, argv, environ);
	return fail("execve /proc/self/fd");
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: hfexec MODE ARGS...\n");
		return 2;
	}
	const char *mode = argv[1];
	setvbuf(stdout, NULL, _IONBF, 0);

	if (!strcmp(mode, "written") && argc == 4) {
		int fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
		if (fd < 0)
			return fail("create");
		if (copy(argv[2], fd))
			return 1;
		close(fd);
		char *args[] = {argv[3], NULL};
		execve(argv[3], args, environ);
		return fail("execve");
	}
	if ((!strcmp(mode, "memfd") || !strcmp(mode, "memfd-proc")) && argc == 3) {
		int fd = memfd_create("payload", 0);
		if (fd < 0)
			return fail("memfd_create");
		if (copy(argv[2], fd))
			return 1;
		if (!strcmp(mode, "memfd-proc"))
			return exec_fd_path(fd);
		char *args[] = {"payload", NULL};
		syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
		return fail("execveat");
	}
	if (!strcmp(mode, "procfd") && argc == 3) {
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0)
			return fail("open");
		return exec_fd_path(fd);
	}
	if (!strcmp(mode, "deep") && argc == 4) {
		int n = atoi(argv[2]);
		for (int i = 0; i < n; i++) {
			if (mkdir("d", 0755) && errno != EEXIST)
				return fail("mkdir");
			if (chdir("d"))
				return fail("chdir");
		}
		int fd = open("x", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
		if (fd < 0)
			return fail("create");
		if (copy(argv[3], fd))
			return 1;
		close(fd);
		char *args[] = {"./x", NULL};
		execve("./x", args, environ);
		return fail("execve");
	}
	if (!strcmp(mode, "dlopen") && argc == 3) {
		if (!dlopen(argv[2], RTLD_NOW | RTLD_LOCAL)) {
			fprintf(stderr, "hfexec: dlopen: %s\n", dlerror());
			return 1;
		}
		printf("OK\n");
		return 0;
	}
	if (!strcmp(mode, "mmap") && argc == 3) {
		int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail("open");
		if (mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED)
			return fail("mmap");
		printf("OK\n");
		return 0;
	}
	fprintf(stderr, "hfexec: unknown mode %s or wrong arguments\n", mode);
	return 2;
}
