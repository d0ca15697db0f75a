// Red team helpers for ancestry-scoped rules (redteam3_test.go): ways for a
// descendant of an ancestor binary to exec a denied file. Each mode exits
// 137 when the exec'd program died of SIGKILL, its status otherwise.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static char *target;

static int status_of(int st)
{
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

static void run(void)
{
	char *argv[] = {target, NULL};
	char *envp[] = {NULL};
	execve(target, argv, envp);
	perror("execve");
	_exit(126);
}

static void *thread_exec(void *arg)
{
	(void)arg;
	run();
	return NULL;
}

// A thread that is not the leader execs: the kernel makes it the leader.
static int mode_thread_exec(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, thread_exec, NULL))
		return 125;
	pause();
	return 125;
}

static int mode_vfork_exec(void)
{
	int st;
	pid_t pid = vfork();
	if (pid == 0)
		run();
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return 125;
	return status_of(st);
}

// Double fork: the grandchild is orphaned, reparented to this process (a
// subreaper), starts a session of its own and then execs.
static int mode_orphan_exec(void)
{
	int st;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		return 125;
	pid_t child = fork();
	if (child == 0) {
		if (fork() == 0) {
			usleep(100000); /* the child has exited: reparented */
			setsid();
			run();
		}
		_exit(0);
	}
	if (child < 0 || waitpid(child, &st, 0) < 0)
		return 125;
	if (wait(&st) < 0) /* the grandchild, now ours */
		return 125;
	return status_of(st);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	target = argv[2];
	if (!strcmp(argv[1], "thread-exec"))
		return mode_thread_exec();
	if (!strcmp(argv[1], "vfork-exec"))
		return mode_vfork_exec();
	if (!strcmp(argv[1], "orphan-exec"))
		return mode_orphan_exec();
	return 2;
}
