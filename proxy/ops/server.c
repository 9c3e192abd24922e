/*
 * server.c - start and run the proxy (the main thread).
 *
 * Start: open the control socket and the metrics endpoint, bind the
 * listeners, start the auth pool, the limit tables and the workers.  Then
 * the main thread sleeps in poll() on a signalfd, the control socket and
 * the metrics endpoint's sockets (metrics_http.c, never blocking):
 *
 *   SIGHUP, "reload"   load a new generation beside the running one (config,
 *                      users file, certificates), bind new listeners, and
 *                      hand it to every worker; on any error the running
 *                      generation stays and the error is logged/answered.
 *   SIGTERM, "drain"   stop accepting, let transactions finish, 421, exit;
 *                      shutdown.timeout bounds it (SIGINT, "drain --fast":
 *                      shutdown.fast_timeout); a second signal cuts at once.
 *
 * A generation replaced by a reload is let go only when every worker has
 * adopted the new one: until then a worker may still be inside a call that
 * read the old config through the shared limit tables.
 *
 * Every listener and backend address has a slot in the registry
 * (registry.h) for its counters and, for backends, the operator's
 * enable/disable, which every generation's pool reads: a disabled backend
 * stays disabled across reloads while it is configured.  Reload and
 * drain themselves are server_reload.c's, the answers to control requests
 * server_control.c's, the sums behind a scrape server_metrics.c's;
 * struct server is in server_internal.h.
 *
 * Under systemd (Type=notify) the main thread says READY=1 once the
 * listeners are bound and the workers run, RELOADING=1/READY=1 around a
 * reload, STOPPING=1 at a drain, and WATCHDOG=1 from its loop when the
 * unit sets WatchdogSec= (sdnotify.c).
 *
 * The main thread also samples the allocator for limits.max_memory
 * (caps.h) every CAPS_SAMPLE_MS while a cap is set, and starts jemalloc's
 * purging thread once privileges are dropped (start_purging()).
 *
 * Security stance: everything privileged (keys, sockets, the XDP program)
 * is done in server_start() before any thread exists, then
 * privilege_drop(); the main thread never reads a client's bytes.
 *
 * Config keys: workers, control.*, metrics.listen, shutdown.*,
 * limits.max_memory.  What a reload cannot change (workers, auth.threads,
 * auth.cache_*, limits table sizes, the TLS ticket key lifetime, the
 * control socket and metrics.listen) keeps its value and is logged as
 * such.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "config/audit.h"
#include "auth/auth_backend.h"
#include "auth/passwd_db.h"
#include "bans/bans.h"
#include "cluster/cluster.h"
#include "limits/caps.h"
#include "ops/control.h"
#include "config/generation.h"
#include "io/listen.h"
#include "lib/log.h"
#include "ops/metrics_http.h"
#include "io/backend_pool.h"
#include "ops/privilege.h"
#include "limits/ratelimit.h"
#include "ops/registry.h"
#include "ops/sdnotify.h"
#include "ops/server.h"
#include "ops/server_internal.h"
#include "lib/timer.h"
#include "io/tls.h"
#include "io/worker.h"

#define SWEEP_MS 1000 /* expired bans leave memory and kernel */

static bool
all_joined(struct server *srv)
{
	for (unsigned k = 0; k < srv->nworkers; k++) {
		if (!srv->joined[k] && worker_tryjoin(srv->workers[k]))
			srv->joined[k] = true;
		if (!srv->joined[k])
			return false;
	}
	return true;
}

static void
on_signal(struct server *srv)
{
	struct signalfd_siginfo si;
	char err[1024];

	if (read(srv->sfd, &si, sizeof(si)) != sizeof(si))
		return;
	switch (si.ssi_signo) {
	case SIGHUP:
		log_info("reloading", " signal=SIGHUP");
		server_reload(srv, NULL, err, sizeof(err));
		break;
	case SIGTERM:
	case SIGINT:
		log_info("stopping", " signal=%s",
			 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		server_drain(srv, si.ssi_signo == SIGINT);
		break;
	}
}

/* limits.max_memory: the allocator's figures into the flag the workers
 * read at every accept; a change of state is logged. */
static void
sample_memory(struct server *srv)
{
	uint64_t limit = srv->gen->cfg->max_memory;
	enum caps_change c;

	srv->sampled_ms = timer_now_ms();
	c = caps_sample(&srv->caps, limit);
	if (c == CAPS_SAME)
		return;
	log_msg(c == CAPS_WENT_OVER ? LOG_WARN : LOG_INFO, "memory-cap",
		" state=%s allocated=%llu resident=%llu limit=%" PRIu64
		" sessions=%u",
		c == CAPS_WENT_OVER ? "over" : "under",
		(unsigned long long)atomic_load(&srv->caps.allocated),
		(unsigned long long)atomic_load(&srv->caps.resident), limit,
		atomic_load(&srv->caps.sessions));
}

static void
loop(struct server *srv)
{
	while (!(srv->draining && all_joined(srv))) {
		struct pollfd pfd[2 + METRICS_HTTP_POLLFDS] = {
			{.fd = srv->sfd, .events = POLLIN},
			{.fd = srv->cfd, .events = POLLIN}};
		bool capped = srv->gen->cfg->max_memory > 0 ||
			      caps_memory_over(&srv->caps);
		int timeout = srv->draining || srv->nretiring ? 100 : 1000;
		size_t nm;
		int r;

		if (capped)
			timeout = CAPS_SAMPLE_MS;
		nm = srv->metrics ? metrics_http_pollfds(srv->metrics, pfd + 2,
							 &timeout)
				  : 0;
		sdnotify_watchdog(timer_now_ms(), &timeout);
		r = poll(pfd, 2 + nm, timeout);

		if (r < 0 && errno != EINTR) {
			log_error("poll-failed", " error=\"%s\"",
				  strerror(errno));
			server_drain(srv, true);
		}
		if (r > 0 && (pfd[0].revents & POLLIN))
			on_signal(srv);
		if (r > 0 && srv->cfd >= 0 && (pfd[1].revents & POLLIN))
			control_serve(srv->cfd, srv);
		if (srv->metrics != NULL)
			metrics_http_serve(srv->metrics, pfd + 2,
					   r > 0 ? nm : 0);
		if (srv->nretiring > 0)
			server_retire(srv);
		if (capped &&
		    timer_now_ms() - srv->sampled_ms >= CAPS_SAMPLE_MS)
			sample_memory(srv);
		if (timer_now_ms() - srv->swept_ms >= SWEEP_MS) {
			srv->swept_ms = timer_now_ms();
			bans_sweep(srv->shared.bans);
		}
		server_resolve_tick(srv, timer_now_ms());
	}
}

/*
 * jemalloc's purging thread (main.c sets the decay time it works to): an
 * idle proxy makes no allocator calls, so without it the pages freed by a
 * burst of handshakes stay dirty in RSS (docs/PERFORMANCE.md, change 8).
 * Started by this thread after privilege_drop(), the new thread has the
 * dropped credentials and, like this one, no seccomp filter (it reads no
 * client bytes).  Without jemalloc (ASan) there is nothing to start.
 */
static void
start_purging(void)
{
	bool on = true;
	int rc;

	if (mallctl == NULL)
		return;
	rc = mallctl("background_thread", NULL, NULL, &on, sizeof(on));
	if (rc != 0)
		log_warn("allocator", " background_thread=off error=\"%s\"",
			 strerror(rc));
}

static int
server_start(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->gen->cfg;
	sigset_t sigs;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	/* Threads inherit this mask; only the signalfd takes them. */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	srv->sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (srv->sfd < 0) {
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		return -1;
	}
	if (tls_global_init(cfg, err, errlen) != 0)
		return -1;
	/* systemd's Type=notify (sdnotify.c): READY=1 once all is up. */
	if (sdnotify_open(err, errlen) != 0)
		return -1;
	/* Before the listeners: once they take connections, msaproxyctl
	 * works too. */
	if (cfg->control_socket != NULL) {
		srv->cfd = control_listen(cfg, err, errlen);
		if (srv->cfd < 0)
			return -1;
		srv->control_path = strdup(cfg->control_socket);
	}
	if (cfg->metrics_listen.len > 0) {
		srv->metrics = metrics_http_open(cfg, server_metrics_body, srv,
						 err, errlen);
		if (srv->metrics == NULL)
			return -1;
		metrics_http_set_status(
			srv->metrics,
			&(struct metrics_http_status){
				.json = server_overview_body,
				.enabled = server_overview_enabled,
				.tick = server_overview_tick,
				.admin_on = server_overview_admin_on,
				.login = server_overview_login,
				.action = server_overview_action,
				.arg = srv});
	}
	if (listen_set_build(NULL, cfg, srv->nworkers, &srv->listeners, err,
			     errlen) != 0)
		return -1;
	srv->shared.bans = bans_open(cfg, err, errlen);
	if (srv->shared.bans == NULL)
		return -1;
	/* The control socket belongs to the user it will serve as. */
	if (srv->control_path != NULL && cfg->run_user != NULL &&
	    geteuid() == 0 &&
	    chown(srv->control_path, cfg->run_uid, cfg->run_gid) != 0) {
		snprintf(err, errlen, "chown %s: %s", srv->control_path,
			 strerror(errno));
		return -1;
	}
	/* Everything privileged is done; no thread has started yet. */
	if (privilege_drop(cfg, err, errlen) != 0)
		return -1;
	start_purging();
	srv->shared.auth =
		auth_backend_start(cfg, srv->gen->users, err, errlen);
	if (srv->shared.auth == NULL)
		return -1;
	generation_set_mechs(srv->gen, auth_backend_offer(srv->shared.auth));
	srv->shared.limits = ratelimit_new(cfg, err, errlen);
	if (srv->shared.limits == NULL)
		return -1;
	if (cfg->cluster_redis.len > 0) {
		struct cluster_ban_sink sink = server_cluster_sink(srv);

		srv->shared.cluster = cluster_start(cfg, &sink, err, errlen);
		if (srv->shared.cluster == NULL)
			return -1;
		srv->shared.cluster_policy = (struct policy_shared){
			.give = cluster_give,
			.arg = srv->shared.cluster,
			.fail_closed = cfg->cluster_fail_closed,
		};
		server_cluster_files(srv, cfg);
	}
	return 0;
}

int
server_run(const char *path, struct generation *gen)
{
	struct server srv = {.path = path, .gen = gen, .sfd = -1, .cfd = -1};
	unsigned started = 0;
	char err[1024];
	int status = 1;

	srv.next_id = gen->id + 1;
	srv.fixed = server_fixed_keys(gen->cfg);
	srv.nworkers = gen->ntls;
	srv.started_ms = timer_now_ms();
	srv.started_wall_ms = srv.loaded_wall_ms = server_wall_ms();
	srv.last_reload_ok = true;
	caps_init(&srv.caps);
	srv.shared.caps = &srv.caps;
	srv.workers = calloc(srv.nworkers, sizeof(*srv.workers));
	srv.joined = calloc(srv.nworkers, sizeof(*srv.joined));
	srv.reg = calloc(1, sizeof(*srv.reg));
	if (srv.workers == NULL || srv.joined == NULL || srv.reg == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	server_bind_generation(&srv, gen, NULL);
	if (server_start(&srv, err, sizeof(err)) != 0)
		goto out;
	for (unsigned k = 0; k < srv.nworkers; k++) {
		struct worker_listener *ls =
			server_listeners_for(&srv.listeners, gen->cfg, k);

		srv.workers[k] =
			ls == NULL ? NULL
				   : worker_new(k, gen, ls, srv.listeners.n,
						&srv.shared, err, sizeof(err));
		free(ls);
		if (srv.workers[k] == NULL ||
		    worker_start(srv.workers[k], err, sizeof(err)) != 0)
			goto out;
		started++;
	}
	/* The sockets now belong to the workers. */
	log_info("ready",
		 " workers=%u listeners=%zu backends=%zu users=%zu "
		 "control=%s metrics=%s worker_buffers_kib=%u",
		 srv.nworkers, gen->cfg->nlisteners, gen->cfg->nbackends,
		 passwd_db_count(gen->users),
		 srv.control_path ? srv.control_path : "none",
		 srv.metrics ? gen->cfg->metrics_listen.text : "none",
		 /* what each worker's receive pools come to, once touched */
		 gen->cfg->recv_buffers * 16 + gen->cfg->data_buffers * 64);
	sdnotify("READY=1\nSTATUS=Ready: generation %u, %u workers, %zu "
		 "listeners",
		 gen->id, srv.nworkers, gen->cfg->nlisteners);
	loop(&srv);
	status = 0;
out:
	if (status != 0)
		fprintf(stderr, "msaproxy: %s\n", err);
	for (unsigned k = 0; k < started; k++)
		worker_drain(srv.workers[k], 1);
	for (unsigned k = 0; k < started; k++)
		worker_join(srv.workers[k]);
	for (unsigned k = 0; k < srv.nworkers && srv.workers; k++) {
		if (srv.workers[k] != NULL) {
			worker_free(srv.workers[k]); /* closes its sockets */
			continue;
		}
		for (size_t i = 0; i < srv.listeners.n; i++)
			close(srv.listeners.v[i].fds[k]); /* never handed */
	}
	listen_set_forget(&srv.listeners);
	auth_backend_stop(srv.shared.auth);
	cluster_stop(srv.shared.cluster); /* after the workers: no asks */
	ratelimit_free(srv.shared.limits);
	bans_close(srv.shared.bans); /* detaches XDP; pinned bans stay */
	while (srv.nretiring > 0)
		generation_drop(srv.retiring[--srv.nretiring]);
	generation_drop(srv.gen);
	tls_global_free(); /* every thread has ended */
	if (srv.cfd >= 0) {
		close(srv.cfd);
		unlink(srv.control_path);
	}
	free(srv.control_path);
	metrics_http_close(srv.metrics);
	if (srv.sfd >= 0)
		close(srv.sfd);
	sdnotify_close();
	free(srv.workers);
	free(srv.joined);
	free(srv.reg); /* after the last generation: its pools point here */
	if (status == 0)
		log_info("stopped", "%s", "");
	return status;
}
