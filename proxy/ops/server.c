/*
 * server.c - start, run, reload and drain the proxy (the main thread).
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
 * stays disabled across reloads while it is configured.  The answers to
 * control requests are server_control.c's, the sums behind a scrape
 * server_metrics.c's; struct server is in server_internal.h.
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
#include "auth/auth_pool.h"
#include "auth/passwd_db.h"
#include "bans/bans.h"
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
#include "ops/server.h"
#include "ops/server_internal.h"
#include "lib/timer.h"
#include "io/tls.h"
#include "io/worker.h"

#define SWEEP_MS 1000 /* expired bans leave memory and kernel */

/* The sockets worker k gets from set s built for cfg. */
static struct worker_listener *
listeners_for(const struct listen_set *s, const struct config *cfg, unsigned k)
{
	struct worker_listener *ls = calloc(s->n ? s->n : 1, sizeof(*ls));

	for (size_t i = 0; ls != NULL && i < s->n; i++) {
		ls[i].cl = &cfg->listeners[i];
		ls[i].fd = s->v[i].fds[k];
	}
	return ls;
}

/* ---------------------------------------------------------------------
 * Reload
 */

/* Drop retired generations once every worker is past them. */
static void
retire(struct server *srv)
{
	for (unsigned k = 0; k < srv->nworkers; k++) {
		if (!srv->joined[k] &&
		    atomic_load(
			    &worker_counters(srv->workers[k])->generation) !=
			    srv->gen->id)
			return;
	}
	while (srv->nretiring > 0)
		generation_drop(srv->retiring[--srv->nretiring]);
}

static struct fixed_keys
fixed_keys(const struct config *cfg)
{
	return (struct fixed_keys){
		.workers = cfg->workers,
		.auth_threads = cfg->auth_threads,
		.control_mode = cfg->control_mode,
		.auth_cache_ttl_ms = cfg->auth_cache_ttl_ms,
		.ticket_key_lifetime_ms = cfg->ticket_key_lifetime_ms,
		.auth_cache_size = cfg->auth_cache_size,
		.nxdp_interfaces = cfg->nxdp_interfaces,
		.xdp_enabled = cfg->xdp_enabled,
		.xdp_mode = (int)cfg->xdp_mode,
		.xdp_scope = (int)cfg->xdp_scope,
		.run_uid = cfg->run_user ? cfg->run_uid : 0,
		.run_gid = cfg->run_user ? cfg->run_gid : 0,
		.seccomp = (int)cfg->seccomp,
		.metrics_listen = cfg->metrics_listen,
	};
}

static void
ignored(const char *key)
{
	log_warn("reload-ignored", " key=%s detail=\"%s\"", key,
		 "differs from the running value: takes effect at restart");
}

/* Say which restart-only keys differ from what is running. */
static void
warn_fixed(const struct server *srv, const struct config *cfg)
{
	const struct fixed_keys *run = &srv->fixed, now = fixed_keys(cfg);
	const char *sock = cfg->control_socket;

	if (run->workers != now.workers)
		ignored("workers");
	if (run->auth_threads != now.auth_threads ||
	    run->auth_cache_ttl_ms != now.auth_cache_ttl_ms ||
	    run->auth_cache_size != now.auth_cache_size)
		ignored("auth.threads/cache_ttl/cache_size");
	if (run->ticket_key_lifetime_ms != now.ticket_key_lifetime_ms)
		ignored("tls.ticket_key_lifetime");
	if ((srv->control_path == NULL) != (sock == NULL) ||
	    (sock != NULL && strcmp(srv->control_path, sock) != 0) ||
	    run->control_mode != now.control_mode)
		ignored("control");
	if (run->xdp_enabled != now.xdp_enabled ||
	    run->nxdp_interfaces != now.nxdp_interfaces ||
	    run->xdp_mode != now.xdp_mode || run->xdp_scope != now.xdp_scope)
		ignored("blocklist.xdp");
	if (run->run_uid != now.run_uid || run->run_gid != now.run_gid ||
	    run->seccomp != now.seccomp)
		ignored("privileges");
	if (run->metrics_listen.len != now.metrics_listen.len ||
	    strcmp(run->metrics_listen.text, now.metrics_listen.text) != 0)
		ignored("metrics.listen");
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Give gen's listeners and backends their registry slots.  A backend
 * that the running generation does not have starts enabled (it may have
 * been disabled, removed and now added again). */
static void
bind_generation(struct server *srv, struct generation *gen,
		const struct generation *running)
{
	const struct config *cfg = gen->cfg;

	for (size_t i = 0; i < cfg->nlisteners; i++)
		gen->listener_slot[i] = registry_listener(
			srv->reg, cfg->listeners[i].addr.text);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const char *name = cfg->backends[i].addr.text;
		unsigned slot = registry_backend(srv->reg, name);
		struct registry_backend *rb = &srv->reg->backend[slot];
		bool kept = false;

		for (size_t j = 0; running && j < running->cfg->nbackends; j++)
			kept = kept ||
			       strcmp(running->cfg->backends[j].addr.text,
				      name) == 0;
		if (!kept)
			atomic_store(&rb->disabled, false);
		backend_pool_bind(gen->backend_pool, i, slot,
				  registry_backend_is_other(srv->reg, slot)
					  ? NULL
					  : &rb->disabled);
	}
}

/* Audit findings of a reloaded config: logged, as at a start. */
static void
audit_logged(void *ctx, enum audit_level level, const char *text)
{
	char q[1200];

	(void)ctx;
	log_msg(level == AUDIT_ERROR ? LOG_ERROR : LOG_WARN, "config-warning",
		" detail=%s", log_quote(q, sizeof(q), text, strlen(text)));
}

/* A reloaded config is audited as at a start: warnings logged, errors
 * refuse it. */
static int
vet_reload(const struct config *cfg, void *arg, char *err, size_t errlen)
{
	(void)arg;
	if (audit_config(cfg, time(NULL), audit_logged, NULL).errors == 0)
		return 0;
	snprintf(err, errlen, "the audit found errors (logged just before)");
	return -1;
}

static void
reconfigure_log(const struct config *cfg)
{
	struct log_options lo = {
		.level = (enum log_level)cfg->log_level,
		.format = (enum log_format)cfg->log_format,
		.output = (enum log_output)cfg->log_output,
		.facility = cfg->log_facility,
		.syslog_socket = cfg->log_syslog_socket,
	};
	char err[256];

	if (log_configure(&lo, err, sizeof(err)) != 0)
		log_error("log-reconfigure-failed", " error=\"%s\"", err);
}

int
server_reload(struct server *srv, char *err, size_t errlen)
{
	struct generation *gen;
	struct listen_set next;
	char warn[256];

	if (srv->draining) {
		snprintf(err, errlen, "draining: no reload");
		return -1;
	}
	if (srv->nretiring == RETIRE_MAX) {
		retire(srv);
		if (srv->nretiring == RETIRE_MAX) {
			snprintf(err, errlen,
				 "workers have not taken the "
				 "last reloads yet; try again");
			return -1;
		}
	}
	gen = generation_load(srv->path, srv->next_id, srv->nworkers,
			      vet_reload, NULL, err, errlen);
	if (gen == NULL)
		goto fail;
	if (listen_set_build(&srv->listeners, gen->cfg, srv->nworkers, &next,
			     err, errlen) != 0) {
		generation_drop(gen);
		goto fail;
	}
	if (bans_reload(srv->shared.bans, gen->cfg, err, errlen) != 0) {
		listen_set_abort(&srv->listeners, &next);
		generation_drop(gen);
		goto fail;
	}
	srv->next_id++;
	backend_pool_inherit(gen->backend_pool, srv->gen->backend_pool);
	bind_generation(srv, gen, srv->gen);
	warn_fixed(srv, gen->cfg);
	if (ratelimit_reconfigure(srv->shared.limits, gen->cfg, warn,
				  sizeof(warn)))
		log_warn("reload-ignored", " key=limits detail=\"%s\"", warn);
	reconfigure_log(gen->cfg);
	for (unsigned k = 0; k < srv->nworkers; k++) {
		struct worker_listener *ls = listeners_for(&next, gen->cfg, k);

		if (ls == NULL ||
		    worker_adopt(srv->workers[k], gen, ls, next.n) != 0)
			log_error("reload-worker-failed",
				  " worker=%u error=out-of-memory", k);
		free(ls);
	}
	listen_set_forget(&srv->listeners);
	srv->listeners = next;
	srv->retiring[srv->nretiring++] = srv->gen;
	srv->gen = gen;
	srv->reloads++;
	srv->last_reload_ok = true;
	srv->loaded_wall_ms = wall_ms();
	log_info("reloaded",
		 " generation=%u listeners=%zu backends=%zu users=%zu", gen->id,
		 gen->cfg->nlisteners, gen->cfg->nbackends,
		 passwd_db_count(gen->users));
	return 0;
fail:
	srv->reload_failures++;
	srv->last_reload_ok = false;
	log_error("reload-failed", " generation=%u error=\"%s\"", srv->gen->id,
		  err);
	return -1;
}

/* ---------------------------------------------------------------------
 * Drain
 */

void
server_drain(struct server *srv, bool fast)
{
	const struct config *cfg = srv->gen->cfg;
	uint64_t timeout =
		fast ? cfg->shutdown_fast_timeout_ms : cfg->shutdown_timeout_ms;

	if (srv->draining && ++srv->drain_signals > 1)
		timeout = 0; /* asked again: now */
	if (!srv->draining) {
		srv->drain_signals = 1;
		srv->drain_started_ms = timer_now_ms();
	}
	srv->draining = true;
	log_info("draining", " timeout_ms=%" PRIu64 " fast=%s", timeout,
		 fast ? "yes" : "no");
	for (unsigned k = 0; k < srv->nworkers; k++)
		worker_drain(srv->workers[k], timer_now_ms() + timeout);
}

/* ---------------------------------------------------------------------
 * Run
 */

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
		server_reload(srv, err, sizeof(err));
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
			retire(srv);
		if (capped &&
		    timer_now_ms() - srv->sampled_ms >= CAPS_SAMPLE_MS)
			sample_memory(srv);
		if (timer_now_ms() - srv->swept_ms >= SWEEP_MS) {
			srv->swept_ms = timer_now_ms();
			bans_sweep(srv->shared.bans);
		}
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
	/* Before the listeners: once they take connections, msaproxyctl
	 * works too. */
	if (cfg->control_socket != NULL) {
		srv->cfd = control_listen(cfg->control_socket,
					  cfg->control_mode, err, errlen);
		if (srv->cfd < 0)
			return -1;
		srv->control_path = strdup(cfg->control_socket);
	}
	if (cfg->metrics_listen.len > 0) {
		srv->metrics = metrics_http_open(cfg, server_metrics_body, srv,
						 err, errlen);
		if (srv->metrics == NULL)
			return -1;
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
	srv->shared.auth = auth_pool_start(
		cfg->auth_threads, srv->gen->users, cfg->auth_cache_ttl_ms,
		cfg->auth_cache_size, cfg->seccomp, err, errlen);
	if (srv->shared.auth == NULL)
		return -1;
	srv->shared.limits = ratelimit_new(cfg, err, errlen);
	if (srv->shared.limits == NULL)
		return -1;
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
	srv.fixed = fixed_keys(gen->cfg);
	srv.nworkers = gen->ntls;
	srv.started_ms = timer_now_ms();
	srv.started_wall_ms = srv.loaded_wall_ms = wall_ms();
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
	bind_generation(&srv, gen, NULL);
	if (server_start(&srv, err, sizeof(err)) != 0)
		goto out;
	for (unsigned k = 0; k < srv.nworkers; k++) {
		struct worker_listener *ls =
			listeners_for(&srv.listeners, gen->cfg, k);

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
		 "control=%s metrics=%s",
		 srv.nworkers, gen->cfg->nlisteners, gen->cfg->nbackends,
		 passwd_db_count(gen->users),
		 srv.control_path ? srv.control_path : "none",
		 srv.metrics ? gen->cfg->metrics_listen.text : "none");
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
	auth_pool_stop(srv.shared.auth);
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
	free(srv.workers);
	free(srv.joined);
	free(srv.reg); /* after the last generation: its pools point here */
	if (status == 0)
		log_info("stopped", "%s", "");
	return status;
}
