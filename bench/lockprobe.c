/*
 * lockprobe.c - counts lock operations per lock and per thread, for the
 * bench only (issue 19, "many cores").  Built as build/bench/lockprobe.so
 * and loaded with LD_PRELOAD into ctxbench or msaproxy:
 *
 *   LOCKPROBE_OUT=/tmp/locks.tsv LD_PRELOAD=build/bench/lockprobe.so CMD
 *
 * What it counts: the calls that reach glibc through the dynamic linker
 * from another object, which is every lock OpenSSL 3.0 takes
 * (CRYPTO_THREAD_read_lock / write_lock are pthread_rwlock_rdlock /
 * wrlock; libcrypto imports no mutex), every jemalloc mutex
 * (malloc_mutex_lock tries pthread_mutex_trylock, spins, then calls
 * pthread_mutex_lock) and msaproxy's own mutexes and rwlocks:
 *   pthread_mutex_lock, pthread_mutex_trylock,
 *   pthread_rwlock_rdlock, _wrlock, _tryrdlock, _trywrlock,
 *   pthread_cond_wait / _timedwait (they take the mutex again on return).
 * What it cannot see: atomics without a lock (OpenSSL's reference counts
 * and CRYPTO_atomic_add, msaproxy's caps and counters, jemalloc's
 * per-thread caches), pthread_once after the first call (an atomic
 * load), and glibc's own internal locks (stdio, the loader), which never
 * go through the PLT.
 *
 * A lock is one (address, generation): the generation of an address goes
 * up at each pthread_mutex_init / pthread_rwlock_init there, so two locks
 * that the allocator placed at the same address one after the other are
 * two locks, not one lock two threads shared.  A lock initialised
 * statically or by zeroing memory has generation 0 at its address.
 *
 * How: each thread counts into its own open-addressed table (mmap'd on
 * its first lock; no lock in the probe, no malloc: the probe must not
 * count itself or deadlock in the allocator it watches).  The address to
 * generation table is shared and lock-free (compare-and-swap on insert).
 * The probe keeps two call stacks (libgcc's _Unwind_Backtrace) so the report
 * can say where a lock lives: where it was made (pthread_*_init) and where each
 * thread first took it.  At exit the
 * probe writes every table to LOCKPROBE_OUT ("%p" in it becomes the
 * process id, for a command that runs others; tab-separated):
 *   T <thread#> <tid> <name>                      one per thread
 *   L <thread#> <addr> <gen> <count per kind...> <first-use frames...>
 *     | <frames of its pthread_*_init, if the probe saw it>
 *   F <addr> <object> <offset> <symbol or -> <offset in symbol>
 * Kinds, in order: mutex_lock, mutex_trylock, mutex_trylock_busy,
 * rdlock, wrlock, tryrdlock, trywrlock, rw_try_busy, cond_relock.
 * bench/lockstat.py reads it.  Thread names come from
 * pthread_setname_np (interposed, no system call of the probe's own:
 * msaproxy's workers run under seccomp).
 *
 * Security stance: a benchmark tool, never shipped.  Trusts its
 * environment; writes one file, named by LOCKPROBE_OUT.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unwind.h>

enum kind {
	K_MUTEX,
	K_MUTEX_TRY,
	K_MUTEX_TRY_BUSY,
	K_RD,
	K_WR,
	K_TRYRD,
	K_TRYWR,
	K_RW_TRY_BUSY,
	K_COND_RELOCK,
	KINDS
};

#define GEN_BITS    20 /* the address -> generation table */
#define THREAD_BITS 17 /* each thread's table of locks */
#define FRAMES	    10
#define PROBE_LIMIT 64 /* linear probes before a table counts as full */
#define TLS	    __attribute__((tls_model("initial-exec")))

struct gen_slot {
	_Atomic uintptr_t addr;
	_Atomic uint32_t gen;
	uint32_t nframes; /* where the current generation was made */
	void *frames[FRAMES];
};

struct entry {
	uintptr_t addr;
	uint32_t gen;
	uint32_t nframes, nmade;
	uint64_t n[KINDS];
	void *frames[FRAMES]; /* this thread's first operation on it */
	void *made[FRAMES];   /* its pthread_*_init, when the probe saw it */
};

struct thread_table {
	struct thread_table *next;
	int idx;
	pid_t tid;
	char name[16];
	uint64_t overflow; /* operations not counted: a table was full */
	struct entry tab[1u << THREAD_BITS];
};

static struct gen_slot *gens;
static _Atomic(struct thread_table *) tables;
static atomic_int nthreads;
static atomic_bool dumping;
static _Thread_local struct thread_table *me TLS;
static _Thread_local int inside
	TLS; /* the probe's own allocations: not counted */

static int (*real_mutex_lock)(pthread_mutex_t *);
static int (*real_mutex_trylock)(pthread_mutex_t *);
static int (*real_mutex_init)(pthread_mutex_t *, const pthread_mutexattr_t *);
static int (*real_rdlock)(pthread_rwlock_t *);
static int (*real_wrlock)(pthread_rwlock_t *);
static int (*real_tryrdlock)(pthread_rwlock_t *);
static int (*real_trywrlock)(pthread_rwlock_t *);
static int (*real_rw_init)(pthread_rwlock_t *, const pthread_rwlockattr_t *);
static int (*real_cond_wait)(pthread_cond_t *, pthread_mutex_t *);
static int (*real_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *,
				  const struct timespec *);
static int (*real_setname)(pthread_t, const char *);

/* dlsym does not allocate when it finds the name: safe from inside the
 * allocator's first lock. */
static void *
next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (p == NULL) {
		static const char msg[] = "lockprobe: a pthread symbol is "
					  "missing\n";
		(void)!write(2, msg, sizeof(msg) - 1);
		abort();
	}
	return p;
}

#define REAL(var, name)                                                        \
	do {                                                                   \
		if ((var) == NULL)                                             \
			*(void **)&(var) = next(name);                         \
	} while (0)

static void *
map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Call stacks through libgcc's unwinder, linked in: glibc's backtrace()
 * would dlopen libgcc_s on its first call, and dlopen allocates, inside
 * jemalloc's own first lock. */
struct stack {
	void **frames;
	int n, max, skip;
};

static _Unwind_Reason_Code
stack_step(struct _Unwind_Context *ctx, void *arg)
{
	struct stack *st = arg;
	uintptr_t ip = _Unwind_GetIP(ctx);

	if (ip == 0 || st->n >= st->max)
		return _URC_END_OF_STACK;
	if (st->skip > 0)
		st->skip--;
	else
		st->frames[st->n++] = (void *)ip;
	return _URC_NO_REASON;
}

/* The caller's callers: skip stack_of itself, its caller and the
 * wrapper around that. */
static uint32_t __attribute__((noinline)) stack_of(void **frames)
{
	struct stack st = {.frames = frames, .max = FRAMES, .skip = 3};

	_Unwind_Backtrace(stack_step, &st);
	return (uint32_t)st.n;
}

static uint64_t
hash(uintptr_t a, uint32_t g)
{
	uint64_t h = ((uint64_t)a ^ ((uint64_t)g << 48)) * 0x9e3779b97f4a7c15u;

	return h ^ (h >> 29);
}

static struct gen_slot *
gen_slot(uintptr_t addr)
{
	struct gen_slot *g = atomic_load_explicit(
		(_Atomic(struct gen_slot *) *)&gens, memory_order_acquire);
	size_t mask = (1u << GEN_BITS) - 1, i = hash(addr, 0) & mask;

	if (g == NULL) {
		struct gen_slot *fresh = map(sizeof(*g) << GEN_BITS),
				*none = NULL;
		if (fresh == NULL)
			return NULL;
		if (!atomic_compare_exchange_strong(
			    (_Atomic(struct gen_slot *) *)&gens, &none,
			    fresh)) {
			munmap(fresh, sizeof(*g) << GEN_BITS);
			fresh = none;
		}
		g = fresh;
	}
	for (int probes = 0; probes < PROBE_LIMIT;
	     probes++, i = (i + 1) & mask) {
		uintptr_t have =
			atomic_load_explicit(&g[i].addr, memory_order_acquire);
		if (have == addr)
			return &g[i];
		if (have == 0 &&
		    (atomic_compare_exchange_strong(&g[i].addr, &have, addr) ||
		     have == addr))
			return &g[i];
	}
	return NULL;
}

static uint32_t
generation(const void *lock, struct gen_slot **slot)
{
	struct gen_slot *s = gen_slot((uintptr_t)lock);

	*slot = s;
	return s ? atomic_load_explicit(&s->gen, memory_order_relaxed) : 0;
}

/* A lock made at this address: a new generation, and where. */
static void __attribute__((noinline)) new_generation(const void *lock)
{
	struct gen_slot *s;

	if (inside || atomic_load_explicit(&dumping, memory_order_relaxed))
		return;
	inside = 1;
	s = gen_slot((uintptr_t)lock);
	if (s != NULL) {
		s->nframes = stack_of(s->frames);
		atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
	}
	inside = 0;
}

static struct thread_table *
thread_table(void)
{
	struct thread_table *t;

	if (me != NULL)
		return me;
	t = map(sizeof(*t));
	if (t == NULL)
		return NULL;
	t->tid = (pid_t)syscall(SYS_gettid);
	t->idx = atomic_fetch_add(&nthreads, 1);
	strcpy(t->name, t->tid == getpid() ? "main" : "-");
	t->next = atomic_load(&tables);
	while (!atomic_compare_exchange_weak(&tables, &t->next, t))
		;
	me = t;
	return t;
}

static void __attribute__((noinline)) count(const void *lock, enum kind k)
{
	struct thread_table *t;
	struct gen_slot *slot;
	uintptr_t addr = (uintptr_t)lock;
	uint32_t gen;
	size_t mask = (1u << THREAD_BITS) - 1, i;

	if (inside || atomic_load_explicit(&dumping, memory_order_relaxed))
		return;
	inside = 1;
	t = thread_table();
	if (t == NULL)
		goto out;
	gen = generation(lock, &slot);
	i = hash(addr, gen) & mask;
	for (int probes = 0; probes < PROBE_LIMIT;
	     probes++, i = (i + 1) & mask) {
		struct entry *e = &t->tab[i];
		if (e->addr == addr && e->gen == gen) {
			e->n[k]++;
			goto out;
		}
		if (e->addr == 0) {
			e->nframes = stack_of(e->frames);
			if (slot != NULL && gen > 0) {
				e->nmade = slot->nframes;
				memcpy(e->made, slot->frames, sizeof(e->made));
			}
			e->addr = addr;
			e->gen = gen;
			e->n[k]++;
			goto out;
		}
	}
	t->overflow++;
out:
	inside = 0;
}

int
pthread_mutex_lock(pthread_mutex_t *m)
{
	REAL(real_mutex_lock, "pthread_mutex_lock");
	count(m, K_MUTEX);
	return real_mutex_lock(m);
}

int
pthread_mutex_trylock(pthread_mutex_t *m)
{
	int rc;

	REAL(real_mutex_trylock, "pthread_mutex_trylock");
	rc = real_mutex_trylock(m);
	count(m, rc == 0 ? K_MUTEX_TRY : K_MUTEX_TRY_BUSY);
	return rc;
}

int
pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
	REAL(real_mutex_init, "pthread_mutex_init");
	new_generation(m);
	return real_mutex_init(m, a);
}

int
pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
	REAL(real_rdlock, "pthread_rwlock_rdlock");
	count(l, K_RD);
	return real_rdlock(l);
}

int
pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
	REAL(real_wrlock, "pthread_rwlock_wrlock");
	count(l, K_WR);
	return real_wrlock(l);
}

int
pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
	int rc;

	REAL(real_tryrdlock, "pthread_rwlock_tryrdlock");
	rc = real_tryrdlock(l);
	count(l, rc == 0 ? K_TRYRD : K_RW_TRY_BUSY);
	return rc;
}

int
pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
	int rc;

	REAL(real_trywrlock, "pthread_rwlock_trywrlock");
	rc = real_trywrlock(l);
	count(l, rc == 0 ? K_TRYWR : K_RW_TRY_BUSY);
	return rc;
}

int
pthread_rwlock_init(pthread_rwlock_t *l, const pthread_rwlockattr_t *a)
{
	REAL(real_rw_init, "pthread_rwlock_init");
	new_generation(l);
	return real_rw_init(l, a);
}

/* The condition variable's own lock is glibc's; the mutex it takes again
 * on the way out is the caller's, one more operation on it. */
int
pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
	int rc;

	if (real_cond_wait == NULL)
		*(void **)&real_cond_wait =
			dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.3.2");
	rc = real_cond_wait(c, m);
	count(m, K_COND_RELOCK);
	return rc;
}

int
pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
		       const struct timespec *abstime)
{
	int rc;

	if (real_cond_timedwait == NULL)
		*(void **)&real_cond_timedwait = dlvsym(
			RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
	rc = real_cond_timedwait(c, m, abstime);
	count(m, K_COND_RELOCK);
	return rc;
}

int
pthread_setname_np(pthread_t th, const char *name)
{
	REAL(real_setname, "pthread_setname_np");
	if (pthread_equal(th, pthread_self())) {
		struct thread_table *t;
		inside = 1;
		t = thread_table();
		inside = 0;
		if (t != NULL)
			snprintf(t->name, sizeof(t->name), "%s", name);
	}
	return real_setname(th, name);
}

/* The dump: plain write(2) through a buffer, no stdio (it allocates). */
struct out {
	int fd;
	size_t len;
	char buf[1 << 16];
};

static void
flush(struct out *o)
{
	size_t off = 0;

	while (off < o->len) {
		ssize_t n = write(o->fd, o->buf + off, o->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	o->len = 0;
}

static void __attribute__((format(printf, 2, 3)))
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->len > sizeof(o->buf) - 1024)
		flush(o);
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n < sizeof(o->buf) - o->len
				  ? (size_t)n
				  : sizeof(o->buf) - o->len - 1;
}

/* Each distinct frame once: a set of addresses on its own mapping. */
static int
frame_new(uintptr_t *set, size_t mask, uintptr_t a)
{
	for (size_t i = hash(a, 0) & mask;; i = (i + 1) & mask) {
		if (set[i] == a)
			return 0;
		if (set[i] == 0) {
			set[i] = a;
			return 1;
		}
	}
}

static void
put_frame(struct out *o, uintptr_t a, const char *exe)
{
	Dl_info info;

	if (dladdr((void *)a, &info) == 0 || info.dli_fname == NULL) {
		put(o, "F\t%#lx\t?\t0\t-\t0\n", (unsigned long)a);
		return;
	}
	put(o, "F\t%#lx\t%s\t%#lx\t%s\t%#lx\n", (unsigned long)a,
	    info.dli_fname[0] ? info.dli_fname : exe,
	    (unsigned long)(a - (uintptr_t)info.dli_fbase),
	    info.dli_sname ? info.dli_sname : "-",
	    info.dli_sname ? (unsigned long)(a - (uintptr_t)info.dli_saddr)
			   : 0ul);
}

static void
dump(void)
{
	const char *path = getenv("LOCKPROBE_OUT"), *pct;
	static struct out o;
	char exe[512] = "?", named[1024];
	size_t fmask = (1u << 20) - 1;
	uintptr_t *fset;
	ssize_t n;

	if (path == NULL || atomic_exchange(&dumping, true))
		return;
	pct = strstr(path, "%p");
	if (pct != NULL) {
		snprintf(named, sizeof(named), "%.*s%d%s", (int)(pct - path),
			 path, (int)getpid(), pct + 2);
		path = named;
	}
	o.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (o.fd < 0)
		return;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 1] = '\0';
	fset = map((fmask + 1) * sizeof(*fset));
	put(&o, "# lockprobe\tpid %d\t%s\n", (int)getpid(), exe);
	for (struct thread_table *t = atomic_load(&tables); t; t = t->next)
		put(&o, "T\t%d\t%d\t%s\t%lu\n", t->idx, (int)t->tid, t->name,
		    (unsigned long)t->overflow);
	for (struct thread_table *t = atomic_load(&tables); t; t = t->next) {
		for (size_t i = 0; i <= (1u << THREAD_BITS) - 1; i++) {
			struct entry *e = &t->tab[i];
			if (e->addr == 0)
				continue;
			put(&o, "L\t%d\t%#lx\t%u", t->idx,
			    (unsigned long)e->addr, e->gen);
			for (int k = 0; k < KINDS; k++)
				put(&o, "\t%lu", (unsigned long)e->n[k]);
			for (uint32_t f = 0; f < e->nframes; f++)
				put(&o, "\t%#lx", (unsigned long)e->frames[f]);
			put(&o, "\t|");
			for (uint32_t f = 0; f < e->nmade; f++)
				put(&o, "\t%#lx", (unsigned long)e->made[f]);
			put(&o, "\n");
		}
	}
	for (struct thread_table *t = atomic_load(&tables); t && fset != NULL;
	     t = t->next)
		for (size_t i = 0; i <= (1u << THREAD_BITS) - 1; i++) {
			struct entry *e = &t->tab[i];
			for (uint32_t f = 0; f < e->nframes + e->nmade; f++) {
				uintptr_t a =
					(uintptr_t)(f < e->nframes
							    ? e->frames[f]
							    : e->made[f -
								      e->nframes]);
				if (frame_new(fset, fmask, a))
					put_frame(&o, a, exe);
			}
		}
	flush(&o);
	close(o.fd);
}

static void __attribute__((constructor)) probe_start(void)
{
	REAL(real_mutex_lock, "pthread_mutex_lock");
	REAL(real_mutex_trylock, "pthread_mutex_trylock");
	REAL(real_rdlock, "pthread_rwlock_rdlock");
	REAL(real_wrlock, "pthread_rwlock_wrlock");
}

static void __attribute__((destructor)) probe_stop(void)
{
	dump();
}
