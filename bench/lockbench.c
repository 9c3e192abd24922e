/*
 * lockbench.c - what one lock operation costs when its cache line bounces
 * between threads, for the many-cores model (issue 19, bench/lockstat.py).
 *
 * Every thread does --ops lock+unlock pairs (a counter bumped inside) on
 * ONE lock, the worst case of a lock shared by every worker:
 *   mutex     pthread_mutex_lock / unlock (msaproxy's tables, jemalloc)
 *   rdlock    pthread_rwlock_rdlock / unlock (OpenSSL's read locks:
 *             readers never wait for each other, but each takes the
 *             lock word's line in exclusive mode to count itself in)
 *   wrlock    pthread_rwlock_wrlock / unlock (OpenSSL's write locks)
 *   atomic    one atomic add on a shared counter (the floor: a line
 *             transfer and nothing else)
 * for three placements: 1 thread (no contention), 2 threads pinned one to
 * each of CPUs 0 and 1 (the line crosses cores on every operation), and
 * --threads threads unpinned (more threads than cores: the holder can be
 * preempted, waiters sleep in futex).  Then "pingpong": two threads pinned
 * apart hand one flag back and forth, in 10 rounds; half a round trip is
 * one cache-line transfer between the two cores (the best round; the
 * median says how much other work on the CPUs got in the way).
 *
 * Prints one JSON object per line:
 *   {"op": "mutex", "threads": 2, "pinned": true, "ops": N,
 *    "serial_ns": wall / all operations (the lock's throughput, inverted:
 *                 what one operation costs the whole machine),
 *    "thread_ns": mean wall / operations of one thread}
 *   {"op": "pingpong", "transfer_ns": one-way line transfer, best round,
 *    "median_ns": the median round}
 *
 * Security stance: a benchmark.  No input but its arguments.
 *
 *   lockbench [--threads N] [--ops N]
 */
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PINGPONG_ROUNDS 10

enum op { OP_MUTEX, OP_RDLOCK, OP_WRLOCK, OP_ATOMIC, OPS };
static const char *const op_names[OPS] = {"mutex", "rdlock", "wrlock",
					  "atomic"};

static struct {
	int threads;
	long ops;
} o = {.threads = 8, .ops = 1000000};

/* The shared lock and counter, each on its own line. */
static struct {
	_Alignas(64) pthread_mutex_t mutex;
	_Alignas(64) pthread_rwlock_t rw;
	_Alignas(64) _Atomic long counter;
	_Alignas(64) long inside;
	_Alignas(64) _Atomic int flag;
} s = {.mutex = PTHREAD_MUTEX_INITIALIZER, .rw = PTHREAD_RWLOCK_INITIALIZER};
static double round_ns[PINGPONG_ROUNDS];

struct job {
	pthread_t t;
	enum op op;
	int cpu; /* -1: anywhere */
	double ns, t0, t1;
	pthread_barrier_t *start;
};

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
		fprintf(stderr, "lockbench: cannot pin to CPU %d\n", cpu);
		exit(1);
	}
}

static void *
run(void *arg)
{
	struct job *j = arg;
	double t0;

	pin(j->cpu);
	pthread_barrier_wait(j->start);
	t0 = j->t0 = now_ns();
	for (long i = 0; i < o.ops; i++) {
		switch (j->op) {
		case OP_MUTEX:
			pthread_mutex_lock(&s.mutex);
			s.inside++;
			pthread_mutex_unlock(&s.mutex);
			break;
		case OP_RDLOCK:
			pthread_rwlock_rdlock(&s.rw);
			pthread_rwlock_unlock(&s.rw);
			break;
		case OP_WRLOCK:
			pthread_rwlock_wrlock(&s.rw);
			s.inside++;
			pthread_rwlock_unlock(&s.rw);
			break;
		default:
			atomic_fetch_add_explicit(&s.counter, 1,
						  memory_order_relaxed);
		}
	}
	j->t1 = now_ns();
	j->ns = (j->t1 - t0) / (double)o.ops;
	return NULL;
}

static void
measure(enum op op, int threads, bool pinned)
{
	struct job *j = calloc((size_t)threads, sizeof(*j));
	pthread_barrier_t start;
	double first = 0, last = 0, mean = 0;

	if (j == NULL)
		exit(1);
	pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		j[i] = (struct job){
			.op = op, .cpu = pinned ? i % 2 : -1, .start = &start};
		if (pthread_create(&j[i].t, NULL, run, &j[i]) != 0)
			exit(1);
	}
	pthread_barrier_wait(&start);
	for (int i = 0; i < threads; i++) {
		pthread_join(j[i].t, NULL);
		mean += j[i].ns / threads;
		first = i == 0 || j[i].t0 < first ? j[i].t0 : first;
		last = j[i].t1 > last ? j[i].t1 : last;
	}
	/* from the first thread's start to the last one's end */
	printf("{\"op\": \"%s\", \"threads\": %d, \"pinned\": %s, "
	       "\"ops\": %ld, \"serial_ns\": %.1f, \"thread_ns\": %.1f}\n",
	       op_names[op], threads, pinned ? "true" : "false",
	       o.ops * threads, (last - first) / ((double)o.ops * threads),
	       mean);
	fflush(stdout);
	pthread_barrier_destroy(&start);
	free(j);
}

/* Side 0 waits for an even flag and makes it odd; side 1 the reverse. */
static void *
pong(void *arg)
{
	struct job *j = arg;
	int side = j->cpu;
	long n = o.ops / PINGPONG_ROUNDS;

	pin(side);
	for (int r = 0; r < PINGPONG_ROUNDS; r++) {
		pthread_barrier_wait(j->start);
		if (side == 0)
			j->t0 = now_ns();
		for (long i = 0; i < n; i++) {
			int want = (int)(2 * i + side);
			while (atomic_load_explicit(
				       &s.flag, memory_order_acquire) != want)
				;
			atomic_store_explicit(&s.flag, want + 1,
					      memory_order_release);
		}
		if (side == 0) {
			/* side 1 makes the last move: wait for it */
			while (atomic_load_explicit(&s.flag,
						    memory_order_acquire) !=
			       (int)(2 * n))
				;
			j->ns = (now_ns() - j->t0) / (2.0 * (double)n);
			round_ns[r] = j->ns;
			atomic_store(&s.flag, 0);
		}
		pthread_barrier_wait(j->start);
	}
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Rounds, so that a round in which another process took one of the
 * CPUs shows as an outlier: the minimum is the transfer itself. */
static void
pingpong(void)
{
	struct job j[2];
	pthread_barrier_t start;

	atomic_store(&s.flag, 0);
	pthread_barrier_init(&start, NULL, 2);
	for (int i = 0; i < 2; i++) {
		j[i] = (struct job){.cpu = i, .start = &start};
		if (pthread_create(&j[i].t, NULL, pong, &j[i]) != 0)
			exit(1);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(j[i].t, NULL);
	qsort(round_ns, PINGPONG_ROUNDS, sizeof(double), cmp_double);
	/* 2 n hand-overs a round, each one line transfer */
	printf("{\"op\": \"pingpong\", \"threads\": 2, \"pinned\": true, "
	       "\"ops\": %ld, \"transfer_ns\": %.1f, \"median_ns\": %.1f}\n",
	       o.ops, round_ns[0], round_ns[PINGPONG_ROUNDS / 2]);
	fflush(stdout);
	pthread_barrier_destroy(&start);
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"threads", required_argument, NULL, 't'},
		{"ops", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			o.threads = atoi(optarg);
			break;
		case 'n':
			o.ops = atol(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: lockbench [--threads N] [--ops N]\n");
			return 2;
		}
	}
	if (o.threads < 2 || o.threads > 256 || o.ops < 1000 ||
	    o.ops > 100000000) {
		fprintf(stderr, "usage: lockbench [--threads 2..256] "
				"[--ops 1000..100000000]\n");
		return 2;
	}
	for (int op = 0; op < OPS; op++) {
		measure((enum op)op, 1, false);
		measure((enum op)op, 2, true);
		measure((enum op)op, o.threads, false);
	}
	pingpong();
	return 0;
}
