/*
 * sandbox.h - the system call filter of the threads that read untrusted
 * bytes (workers, auth threads): privileges.seccomp.
 */
#ifndef MSAPROXY_SANDBOX_H
#define MSAPROXY_SANDBOX_H

#include <stddef.h>

#include "config/config.h"

/*
 * Confine the calling thread (only it: the main thread keeps what a
 * reload needs) to the system calls a worker makes.  SECCOMP_OFF does
 * nothing; SECCOMP_LOG lets a forbidden call through and the kernel logs
 * it (audit); SECCOMP_KILL stops the process with a line on stderr naming
 * the call.  who names the thread in that line ("msa-worker-0").
 */
int sandbox_enter(enum seccomp_mode mode, const char *who, char *err,
		  size_t errlen);

#endif
