// mapfile maps a file the ways a loader or an attacker can, for mmap_test.go.
// It prints "mapped" once a non-executable mapping exists and "OK" when the
// step under test has succeeded, so a kill is seen at the right step.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096

// compat issues an ia32 system call (int 0x80) from this 64-bit process, as
// a 32-bit program would; the sixth argument (ebp) is 0. Built with
// -mno-red-zone, since it pushes.
static long compat(long nr, long a, long b, long c, long d, long e)
{
	int ret;
	__asm__ volatile("push %%rbp\n\txor %%ebp, %%ebp\n\tint $0x80\n\tpop %%rbp"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
	return ret;
}

static int fail(const char *what)
{
	printf("ERR %s: %s\n", what, strerror(errno));
	return 1;
}

// span maps a page of first (anonymous when -1) and of second side by side,
// then makes both executable with one mprotect.
static int span(int first, int second)
{
	char *p = first < 0 ? mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
			    : mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, first, 0);
	if (p == MAP_FAILED)
		return fail("mmap first");
	if (mmap(p + PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, second, 0) == MAP_FAILED)
		return fail("mmap file");
	printf("mapped\n");
	if (mprotect(p, 2 * PAGE, PROT_READ | PROT_EXEC))
		return fail("mprotect");
	printf("OK\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[1], "span-files"))) {
		fprintf(stderr, "usage: mapfile MODE PATH | mapfile span-files PATH PATH\n");
		return 2;
	}
	const char *mode = argv[1], *path = argv[2];
	setvbuf(stdout, NULL, _IONBF, 0);

	if (!strcmp(mode, "span-files")) {
		int a = open(argv[2], O_RDONLY | O_CLOEXEC), b = open(argv[3], O_RDONLY | O_CLOEXEC);
		if (a < 0 || b < 0)
			return fail("open");
		return span(a, b);
	}
	if (!strcmp(mode, "dlopen")) {
		if (!dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
			printf("ERR dlopen: %s\n", dlerror());
			return 1;
		}
		printf("OK\n");
		return 0;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open");

	if (!strcmp(mode, "read")) {
		unsigned char *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED)
			return fail("mmap");
		if (memcmp(p, "\177ELF", 4))
			return fail("not an ELF file");
		printf("OK\n");
		return 0;
	}
	if (!strcmp(mode, "exec")) {
		if (mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED)
			return fail("mmap");
		printf("OK\n");
		return 0;
	}
	if (!strcmp(mode, "mprotect") || !strcmp(mode, "pkey_mprotect")) {
		void *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED)
			return fail("mmap");
		printf("mapped\n");
		long r = !strcmp(mode, "mprotect") ? mprotect(p, PAGE, PROT_READ | PROT_EXEC)
						   : syscall(SYS_pkey_mprotect, p, PAGE, PROT_READ | PROT_EXEC, -1);
		if (r)
			return fail(mode);
		printf("OK\n");
		return 0;
	}
	if (!strcmp(mode, "span"))
		return span(-1, fd);
	if (!strcmp(mode, "read-implies-exec")) {
		if (personality(READ_IMPLIES_EXEC) < 0)
			return fail("personality");
		printf("mapped\n");
		if (mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
			return fail("mmap");
		printf("OK\n");
		return 0;
	}
	if (!strcmp(mode, "compat-mmap2")) {
		long r = compat(192, 0, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd);
		if (r < 0 && r > -4096) {
			errno = -r;
			return fail("ia32 mmap2");
		}
		printf("OK\n");
		return 0;
	}
	if (!strcmp(mode, "compat-mprotect")) {
		void *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_32BIT, fd, 0);
		if (p == MAP_FAILED)
			return fail("mmap");
		printf("mapped\n");
		long r = compat(125, (long)p, PAGE, PROT_READ | PROT_EXEC, 0, 0);
		if (r) {
			errno = -r;
			return fail("ia32 mprotect");
		}
		printf("OK\n");
		return 0;
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
