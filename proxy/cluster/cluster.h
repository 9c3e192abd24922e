/*
 * cluster.h - state shared by every msaproxy node of a cluster, kept in
 * Redis (cluster.redis): the users' buckets (messages, recipients, bytes,
 * the quota), the login failure scores and the networks' failed logins.
 * docs/CLUSTER.md has the picture, the key layout and the failure modes.
 *
 * One thread owns the connection.  Workers never block on it: they hand a
 * request over (cluster_submit) and get it back through req->done, called
 * on the cluster thread, as the auth pool does; their sessions wait like a
 * session waiting for a password check.  Requests that arrive together go
 * out in one write (pipelined) and every one is a single server-side
 * script, so each take is atomic and costs one round trip.
 *
 * Every request gets an answer: CLUSTER_OK with the script's result, or
 * CLUSTER_UNAVAILABLE at once while Redis is down, and after
 * cluster.timeout when it does not answer (the connection is then dropped
 * and made again with a backoff).  What an unavailable answer means is the
 * caller's (cluster.fail: open falls back to the node's own tables).
 *
 * Times are Redis's own clock (TIME inside the scripts), so the nodes'
 * clocks do not matter.
 */
#ifndef MSAPROXY_CLUSTER_H
#define MSAPROXY_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../bpf/blocklist.h" /* enum blocklist_reason */
#include "config/config.h"
#include "lib/ipnet.h"
#include "limits/ratelimit.h"

enum cluster_op {
	CLUSTER_TAKE,	/* all of amount[] or nothing; a kind in debt refuses */
	CLUSTER_GIVE,	/* back what an undelivered transaction took */
	CLUSTER_CHARGE, /* taken without a check: a message's bytes */
	CLUSTER_CHARGE_MANY, /* the same for charges[] of many users */
	CLUSTER_LOGIN, /* a password check's verdict: delay, failure, ban */
	CLUSTER_PEEK,  /* what a user could take now */
	CLUSTER_RESET, /* an operator's reset of a login */
	CLUSTER_BAN,   /* net banned on every node (ttl_ms, reason) */
	CLUSTER_UNBAN, /* net's ban lifted on every node */
	CLUSTER_PING,
};

enum cluster_status {
	CLUSTER_OK,
	CLUSTER_UNAVAILABLE, /* down, timed out, or an error reply */
};

/* A user's or a network's name in Redis: hex of a SHA-256 (users), the
 * network's text (networks). */
#define CLUSTER_KEY_MAX 64

/* Delivered messages' bytes, charged in one call for many users (a
 * worker's link gathers them for a moment: cluster_link.c). */
#define CLUSTER_CHARGES_MAX 32
struct cluster_charge {
	char user[CLUSTER_KEY_MAX];
	uint64_t bytes;
	struct config_rate rate; /* the user's bytes rate */
};

struct cluster_request {
	enum cluster_op op;
	char user[CLUSTER_KEY_MAX]; /* cluster_user_id() */
	/* TAKE, GIVE, CHARGE, PEEK: the user's rates (count 0: not
	 * limited) and the units. */
	struct config_rate rate[LIMIT_USER_KINDS];
	uint64_t amount[LIMIT_USER_KINDS];
	/* LOGIN: */
	bool ok;		   /* the password was right */
	char net[CLUSTER_KEY_MAX]; /* the client's network, "" if untracked */
	struct config_rate login_rate;	/* limits.login.failures */
	uint64_t base_delay_ms;		/* auth.failure_delay */
	uint64_t max_delay_ms;		/* limits.login.max_delay */
	struct config_rate ip_failures; /* limits.ip.auth_failures */
	uint64_t ban_ms;		/* limits.ip.ban_time */
	/* BAN, UNBAN: the network is net (as text), ttl_ms 0: none. */
	uint64_t ttl_ms;
	enum blocklist_reason reason;
	/* CHARGE_MANY: owned by the request (cluster_request_free). */
	struct cluster_charge *charges;
	unsigned ncharges;

	/* Results. */
	enum cluster_status status;
	int refused;	    /* TAKE: the kind, LIMIT_USER_KINDS when taken */
	uint64_t retry_ms;  /* TAKE: UINT64_MAX when never */
	uint64_t delay_ms;  /* LOGIN: how long to hold the answer */
	uint64_t banned_ms; /* LOGIN: a ban it earned */
	uint64_t avail[LIMIT_USER_KINDS]; /* PEEK (UINT64_MAX: free) */
	uint64_t rtt_us;		  /* submit to answer */

	/* The caller's: NULL done means nobody waits (the request is
	 * freed after it went out, answered or not). */
	void (*done)(struct cluster_request *req); /* on the cluster thread */
	void *owner;
	uint64_t cookie;

	/* The cluster's own. */
	uint64_t deadline_us;
	uint64_t submitted_us;
	struct cluster_request *next;
};

struct cluster_stats {
	atomic_bool up;
	_Atomic uint64_t requests, errors, timeouts, unavailable;
	_Atomic uint64_t connects, connect_failures;
	_Atomic uint64_t rtt_us_sum, rtt_count;	    /* answered requests */
	_Atomic uint64_t last_ok_wall_ms;	    /* last answer from Redis */
	_Atomic uint64_t batches;		    /* writes (pipelines) */
	_Atomic uint64_t bans_received;		    /* from other nodes */
	_Atomic uint64_t last_sync_wall_ms;	    /* the last full resync */
	_Atomic uint64_t files_nodes, files_shared; /* other nodes' files */
};

struct cluster;

/* Checks what can be checked without connecting (files readable): for
 * -t.  0, or -1 with err. */
int cluster_check(const struct config *cfg, char *err, size_t errlen);
/* Starts the thread and makes a first connection: a start with wrong
 * credentials fails here with what Redis said; Redis merely down is no
 * error (the cluster connects when it can).  NULL with err. */
struct cluster_ban_sink;
struct cluster *cluster_start(const struct config *cfg,
			      const struct cluster_ban_sink *sink, char *err,
			      size_t errlen);
void cluster_stop(struct cluster *c);
void cluster_submit(struct cluster *c, struct cluster_request *req);
/* A request and what it owns. */
void cluster_request_free(struct cluster_request *req);
/* Submit and wait for the answer (the control socket's calls, on the main
 * thread): bounded, as every request is answered within cluster.timeout
 * or at once while down.  req->done is the cluster's. */
void cluster_call(struct cluster *c, struct cluster_request *req);
/* The last error on the connection ("" if none), into buf. */
void cluster_last_error(struct cluster *c, char *buf, size_t len);
const struct cluster_stats *cluster_stats(const struct cluster *c);
bool cluster_up(const struct cluster *c);
bool cluster_fail_closed(const struct cluster *c);
const char *cluster_node_id(const struct cluster *c);
const char *cluster_address(const struct cluster *c);

/*
 * Bans (manual and automatic; blocklist files through cluster_files.h) are
 * shared: a ban or unban made on one node is kept in Redis and published,
 * and every other node applies it through its sink within the round trip
 * of a publish; a node that (re)connects reads them all back (bans made
 * elsewhere while it was away, lifts the ones unbanned meanwhile, and
 * publishes its own made while Redis was away).
 * The sink (given to cluster_start) runs on the cluster thread.
 */
struct cluster_ban_sink {
	void (*add)(void *arg, const struct ipnet *net, uint64_t ttl_ms,
		    enum blocklist_reason reason, const char *node);
	void (*del)(void *arg, const struct ipnet *net, const char *node);
	/* This node's manual and automatic bans, each to fn: at a resync,
	 * the ones the cluster never heard of (made while Redis was away)
	 * are published then. */
	void (*each)(void *arg,
		     void (*fn)(void *ctx, const struct ipnet *net,
				uint64_t left_ms, enum blocklist_reason reason),
		     void *ctx);
	/* The union of the other nodes' blocklist files (cluster_files.h),
	 * whenever it changes: the whole list, in no order. */
	void (*files)(void *arg, const struct ipnet *v, size_t n);
	void *arg;
};
/* Publish what this node did (no waiting; lost while Redis is down). */
void cluster_ban(struct cluster *c, const struct ipnet *net, uint64_t ttl_ms,
		 enum blocklist_reason reason);
void cluster_unban(struct cluster *c, const struct ipnet *net);
/* This node's blocklist files (after the start and every reload), for
 * the others (cluster.share_files; copied; written when Redis is up), and
 * blocklist.max_entries as now configured (the cap on what is read of each
 * other node's set). */
void cluster_files_set(struct cluster *c, const struct ipnet *v, size_t n,
		       size_t max_entries);

/*
 * A worker's own connection (io/cluster_link.c) for the calls a session
 * waits for: no thread hop, the send and the receive on the worker's ring.
 * With cluster.tls its records go through memory BIOs; while a worker's
 * connection is not up, calls go through the cluster thread.  What it
 * needs of the cluster:
 */
struct redis_conn;
struct redisReply;
bool cluster_tls_on(const struct cluster *c); /* cluster.tls */
/* With cluster.tls, a client SSL set up to verify Redis (NULL: none, or
 * no memory: logged). */
struct ssl_st;
struct ssl_st *cluster_link_tls(const struct cluster *c);
const struct config_addr *cluster_redis_addr(const struct cluster *c);
uint64_t cluster_timeout_ms(const struct cluster *c);
/* A new connection's AUTH, queued on conn: the replies to skip (0 or 1),
 * -1 for no memory. */
int cluster_queue_login(const struct cluster *c, struct redis_conn *conn);
/* req's call queued on conn: 0, -1 for no memory. */
int cluster_queue(struct cluster *c, const struct cluster_request *req,
		  struct redis_conn *conn);
/* A link lost Redis: the thread checks with a call of its own (and, if
 * Redis is gone, goes down: calls are then answered at once). */
void cluster_ping(struct cluster *c);
/* Redis's reply into req's results: false for an error reply or one of
 * the wrong shape (then the connection is to be dropped). */
bool cluster_take_reply(struct cluster_request *req,
			const struct redisReply *r);
/* req answered with status: counted (stats, round trip); the caller
 * hands it on. */
void cluster_count(struct cluster *c, struct cluster_request *req,
		   enum cluster_status status);

/* The id of a login in Redis: the same on every node. */
void cluster_user_id(const char *login, char out[CLUSTER_KEY_MAX]);

/* Units given back to a user's buckets, or a delivered message's bytes
 * charged (charge), without waiting: the shape of policy.h's
 * policy_shared.give, with the cluster as arg. */
void cluster_give(void *cluster, const char *login,
		  const struct config_user_limits *pol,
		  const uint64_t amount[LIMIT_USER_KINDS], bool charge);

/* The same as a request to submit (NULL: no memory). */
struct cluster_request *
cluster_give_request(const char *login, const struct config_user_limits *pol,
		     const uint64_t amount[LIMIT_USER_KINDS], bool charge);

/* The wait before the next connect after a failure: min, then doubling
 * up to max (the thread's connection and every worker's). */
static inline uint64_t
cluster_backoff(uint64_t prev, uint64_t min, uint64_t max)
{
	uint64_t next = prev == 0 ? min : prev * 2;

	return next > max ? max : next;
}

/* A request's rates and amounts filled from a user's policy. */
void cluster_request_rates(struct cluster_request *req,
			   const struct config_user_limits *pol);

#endif
