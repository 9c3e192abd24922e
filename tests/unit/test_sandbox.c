/*
 * test_sandbox.c - the worker threads' system call filter (sandbox.c),
 * on the real kernel: each case runs in a forked child, which confines
 * itself and then makes an allowed or a forbidden call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ops/sandbox.h"

struct outcome {
	int status; /* waitpid's */
	char err[512];
};

/* Fork; the child confines itself in mode, runs body, and exits 0. */
static struct outcome
in_child(enum seccomp_mode mode, void (*body)(void))
{
	struct outcome o = {0};
	int pipefd[2];
	pid_t pid;
	ssize_t n;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[256];

		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		if (sandbox_enter(mode, "msa-worker-7", err, sizeof(err)) !=
		    0) {
			dprintf(STDERR_FILENO, "enter: %s\n", err);
			_exit(99);
		}
		body();
		_exit(0);
	}
	close(pipefd[1]);
	n = read(pipefd[0], o.err, sizeof(o.err) - 1);
	o.err[n > 0 ? n : 0] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &o.status, 0), pid);
	return o;
}

static void
allowed_calls(void)
{
	char buf[16];
	int fds[2];

	/* memory, clock, randomness, a socket, close */
	void *p = malloc(1 << 20);
	struct timespec ts;

	if (p == NULL || clock_gettime(CLOCK_MONOTONIC, &ts) != 0 ||
	    getrandom(buf, sizeof(buf), 0) != sizeof(buf))
		_exit(2);
	free(p);
	/* a backend socket, as the worker makes one */
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	fds[1] = 1;
	if (fds[0] < 0 || setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &fds[1],
				     sizeof(fds[1])) != 0)
		_exit(3);
	close(fds[0]);
}

static void
open_a_file(void)
{
	int fd = open("/etc/hostname", O_RDONLY);

	if (fd >= 0)
		close(fd);
	_exit(fd >= 0 ? 5 : 6);
}

static void
test_allowed_calls_work(void **state)
{
	struct outcome o;

	(void)state;
	o = in_child(SECCOMP_KILL, allowed_calls);
	assert_string_equal(o.err, "");
	assert_true(WIFEXITED(o.status));
	assert_int_equal(WEXITSTATUS(o.status), 0);
	assert_string_equal(o.err, "");
}

static void
test_kill_names_the_call(void **state)
{
	struct outcome o;
	char want[200];

	(void)state;
	o = in_child(SECCOMP_KILL, open_a_file);
	assert_true(WIFEXITED(o.status));
	assert_int_equal(WEXITSTATUS(o.status), 70);
	snprintf(want, sizeof(want),
		 "msaproxy: seccomp: thread msa-worker-7 made forbidden "
		 "system call %d (scmp_sys_resolver names it); stopping\n",
		 (int)SYS_openat);
	assert_string_equal(o.err, want);
}

static void
test_log_lets_it_through(void **state)
{
	struct outcome o;

	(void)state;
	o = in_child(SECCOMP_LOG, open_a_file);
	assert_true(WIFEXITED(o.status));
	assert_int_equal(WEXITSTATUS(o.status), 5); /* opened */
}

static void
test_off_does_nothing(void **state)
{
	struct outcome o;

	(void)state;
	o = in_child(SECCOMP_OFF, open_a_file);
	assert_true(WIFEXITED(o.status));
	assert_int_equal(WEXITSTATUS(o.status), 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed_calls_work),
		cmocka_unit_test(test_kill_names_the_call),
		cmocka_unit_test(test_log_lets_it_through),
		cmocka_unit_test(test_off_does_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
