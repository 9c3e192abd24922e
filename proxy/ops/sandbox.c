/*
 * sandbox.c - the system call filter of the threads that read untrusted
 * bytes (privileges.seccomp).
 *
 * A worker, once its ring is set up, only moves bytes: io_uring, memory,
 * clocks, randomness, locks, sockets to backends, a log line, and blocklist
 * map updates.  Opening files, executing, tracing, changing credentials or
 * signal handlers, loading programs: none of that is on the list, so code
 * an attacker got running in a worker cannot do it either.  The main thread
 * (control plane) is not filtered: a reload opens files and binds sockets.
 * Nor is jemalloc's purging thread, which the main thread starts (server.c)
 * and which reads no client bytes.
 *
 * Built with libseccomp (the well-kept way to write the BPF filter).  A
 * forbidden call in kill mode traps into a handler that names it on stderr
 * and exits, rather than dying silently of SIGSYS: an operator must see
 * which call it was (scmp_sys_resolver N turns the number into a name).
 */
#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ops/sandbox.h"

#define EXIT_SECCOMP 70 /* EX_SOFTWARE: a bug, or an exploit */

static const int allowed[] = {
	/* the ring, and the eventfd that wakes it */
	SCMP_SYS(io_uring_enter),
	SCMP_SYS(io_uring_register),
	SCMP_SYS(read),
	SCMP_SYS(write),
	SCMP_SYS(writev),
	SCMP_SYS(close),
	/* memory (jemalloc, OpenSSL, crypt) */
	SCMP_SYS(mmap),
	SCMP_SYS(munmap),
	SCMP_SYS(mremap),
	SCMP_SYS(madvise),
	SCMP_SYS(mprotect),
	SCMP_SYS(brk),
	/* locks, clocks, randomness */
	SCMP_SYS(futex),
	SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday),
	SCMP_SYS(getrandom),
	SCMP_SYS(sched_yield),
	SCMP_SYS(sched_getaffinity),
	/* backend connections, health checks, syslog datagrams */
	SCMP_SYS(socket),
	SCMP_SYS(connect),
	SCMP_SYS(setsockopt),
	SCMP_SYS(getsockopt),
	SCMP_SYS(getsockname),
	SCMP_SYS(getpeername),
	SCMP_SYS(shutdown),
	SCMP_SYS(sendto),
	SCMP_SYS(sendmsg),
	SCMP_SYS(recvfrom),
	SCMP_SYS(fcntl),
	SCMP_SYS(fstat),
	SCMP_SYS(newfstatat),
	/* the thread's own life */
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(sigaltstack), /* the sanitizers' signal stacks */
	SCMP_SYS(restart_syscall),
	SCMP_SYS(gettid),
	SCMP_SYS(getpid),
	SCMP_SYS(tgkill), /* abort() */
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),
};

/* bpf(): only what bans.c does to the blocklist maps it already holds. */
static const int bpf_commands[] = {
	BPF_MAP_LOOKUP_ELEM,
	BPF_MAP_UPDATE_ELEM,
	BPF_MAP_DELETE_ELEM,
	BPF_MAP_GET_NEXT_KEY,
};

static __thread const char *thread_name = "?";

/* Async-signal-safe: a fixed message, a number, write(2), _exit(2). */
static void
on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[160], num[16];
	int n = 0, len;
	unsigned v = si->si_syscall >= 0 ? (unsigned)si->si_syscall : 0;

	(void)sig;
	(void)uc;
	do
		num[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0 && n < (int)sizeof(num));
	len = 0;
	for (const char *s = "msaproxy: seccomp: thread "; *s; s++)
		line[len++] = *s;
	for (const char *s = thread_name; *s && len < 80; s++)
		line[len++] = *s;
	for (const char *s = " made forbidden system call "; *s; s++)
		line[len++] = *s;
	while (n > 0)
		line[len++] = num[--n];
	for (const char *s = " (scmp_sys_resolver names it); stopping\n"; *s;
	     s++)
		line[len++] = *s;
	if (write(STDERR_FILENO, line, (size_t)len) < 0) {
		/* nothing more we can do */
	}
	_exit(EXIT_SECCOMP);
}

static int
install_trap(char *err, size_t errlen)
{
	struct sigaction sa = {.sa_sigaction = on_sigsys,
			       .sa_flags = SA_SIGINFO};
	sigset_t sys;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&sys);
	sigaddset(&sys, SIGSYS);
	/* A blocked SIGSYS would bypass the handler and kill silently. */
	if (sigaction(SIGSYS, &sa, NULL) != 0 ||
	    pthread_sigmask(SIG_UNBLOCK, &sys, NULL) != 0) {
		snprintf(err, errlen, "seccomp: SIGSYS handler: %s",
			 strerror(errno));
		return -1;
	}
	return 0;
}

int
sandbox_enter(enum seccomp_mode mode, const char *who, char *err, size_t errlen)
{
	scmp_filter_ctx ctx;
	int rc = 0;

	if (mode == SECCOMP_OFF)
		return 0;
	thread_name = who;
	if (mode == SECCOMP_KILL && install_trap(err, errlen) != 0)
		return -1;
	ctx = seccomp_init(mode == SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP);
	if (ctx == NULL) {
		snprintf(err, errlen, "seccomp: cannot make a filter");
		return -1;
	}
	for (size_t i = 0; rc == 0 && i < sizeof(allowed) / sizeof(*allowed);
	     i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
	for (size_t i = 0;
	     rc == 0 && i < sizeof(bpf_commands) / sizeof(*bpf_commands); i++)
		rc = seccomp_rule_add(
			ctx, SCMP_ACT_ALLOW, SCMP_SYS(bpf), 1,
			SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)bpf_commands[i]));
	if (rc == 0)
		rc = seccomp_load(ctx); /* this thread only: no TSYNC */
	if (rc != 0)
		snprintf(err, errlen, "seccomp: %s", strerror(-rc));
	seccomp_release(ctx);
	return rc == 0 ? 0 : -1;
}
