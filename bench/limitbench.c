/*
 * limitbench.c - what a rate-limit check costs (proxy/limits/ratelimit.c).
 *
 * Times the operations a session performs against the shared tables, on
 * limits that never refuse (so every call does its full work):
 *   user_take      one message token for one user (MAIL FROM)
 *   user_key       the keyed hash of a login (once per AUTH)
 *   ip_pair        connect + disconnect of one network (once per session)
 * first on one thread, then with --threads threads all hitting the same
 * user (one shard, one mutex: the worst case), then each on its own user.
 * Prints one JSON object; nanoseconds are per operation as seen by one
 * thread (wall time / operations of that thread).
 *
 *   limitbench [--threads N] [--ops N]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "limits/ratelimit.h"

static struct config cfg;
static struct ratelimit *rl;
static long ops = 2000000;

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct job {
	int kind; /* 0 user_take, 1 user_key, 2 ip_pair */
	char user[32];
	double ns_per_op;
	pthread_barrier_t *start;
};

static void *
run(void *arg)
{
	struct job *j = arg;
	uint64_t amount[LIMIT_USER_KINDS] = {[LIMIT_MESSAGES] = 1}, retry;
	struct ratelimit_key key;
	uint8_t addr[16] = {[10] = 0xff, [11] = 0xff, [12] = 198,
			    [13] = 51,	 [14] = 100,  [15] = 7};
	long n = j->kind == 1 ? ops / 10 : ops;
	double t0;

	ratelimit_user_key(rl, j->user, &key);
	if (j->kind == 2)
		ratelimit_ip_key(rl, addr, &key);
	if (j->start != NULL)
		pthread_barrier_wait(j->start);
	t0 = now_ns();
	for (long i = 0; i < n; i++) {
		uint64_t ms = 1000000 + (uint64_t)i / 100000;
		switch (j->kind) {
		case 0:
			if (ratelimit_user_take(rl, &key, &cfg.user_limits,
						amount, ms,
						&retry) != LIMIT_USER_KINDS)
				abort();
			break;
		case 1:
			ratelimit_user_key(rl, j->user, &key);
			break;
		default:
			if (ratelimit_ip_connect(rl, &key, ms, &retry) !=
			    RATELIMIT_OK)
				abort();
			ratelimit_ip_disconnect(rl, &key);
		}
	}
	j->ns_per_op = (now_ns() - t0) / (double)n;
	return NULL;
}

/* threads jobs of kind at once; same: all on one user.  Mean ns/op. */
static double
measure(int kind, int threads, int same)
{
	pthread_t t[64];
	struct job j[64];
	pthread_barrier_t start;
	double sum = 0;

	pthread_barrier_init(&start, NULL, (unsigned)threads);
	for (int i = 0; i < threads; i++) {
		memset(&j[i], 0, sizeof(j[i]));
		j[i].kind = kind;
		j[i].start = &start;
		snprintf(j[i].user, sizeof(j[i].user), "user%d@example.test",
			 same ? 0 : i);
		pthread_create(&t[i], NULL, run, &j[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		sum += j[i].ns_per_op;
	}
	pthread_barrier_destroy(&start);
	return sum / threads;
}

int
main(int argc, char **argv)
{
	long threads = sysconf(_SC_NPROCESSORS_ONLN);
	char err[256];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atol(argv[++i]);
		else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
			ops = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: limitbench [--threads N] "
					"[--ops N]\n");
			return 2;
		}
	}
	if (threads < 1 || threads > 64 || ops < 1000) {
		fprintf(stderr, "limitbench: threads 1..64, ops >= 1000\n");
		return 2;
	}
	/* Limits that never refuse: every call does its whole job. */
	cfg.user_limits.messages = (struct config_rate){UINT64_C(1) << 40, 1000,
							UINT64_C(1) << 40};
	cfg.max_users = 100000;
	cfg.ip_prefix_v4 = 32;
	cfg.ip_prefix_v6 = 64;
	cfg.ip_connections = (struct config_rate){UINT64_C(1) << 40, 1000,
						  UINT64_C(1) << 40};
	cfg.ip_concurrency = 1000000;
	cfg.ip_max_entries = 100000;
	rl = ratelimit_new(&cfg, err, sizeof(err));
	if (rl == NULL) {
		fprintf(stderr, "limitbench: %s\n", err);
		return 1;
	}
	printf("{\"threads\": %ld, \"ops\": %ld, "
	       "\"user_take_ns\": %.1f, \"user_key_ns\": %.1f, "
	       "\"ip_connect_disconnect_ns\": %.1f, "
	       "\"user_take_ns_all_threads_one_user\": %.1f, "
	       "\"user_take_ns_all_threads_own_user\": %.1f, "
	       "\"ip_connect_disconnect_ns_all_threads_one_network\": %.1f}\n",
	       threads, ops, measure(0, 1, 1), measure(1, 1, 1),
	       measure(2, 1, 1), measure(0, (int)threads, 1),
	       measure(0, (int)threads, 0), measure(2, (int)threads, 1));
	ratelimit_free(rl);
	return 0;
}
