/*
 * server_reload.c - a reload and a drain, on the main thread, as a
 * SIGHUP or SIGTERM (server.c) or a control request (control.c) asks.
 *
 * A reload loads a whole new generation beside the running one (config,
 * users file, certificates; files are read here, never on a worker),
 * binds only the new listener addresses and hands both to every worker; a
 * failure anywhere leaves the running generation alone and is logged and
 * answered.  Values a reload cannot change keep theirs and are logged.
 * Every finding goes back to the caller too (msaproxyctl reload): the
 * first error as the answer, the audit's other errors and its warnings
 * and the restart-only keys as "error: ..." / "warning: ..." lines, all
 * in the "FILE:LINE: KEY: why" words msaproxy -t prints.
 * The replaced generation is let go once every worker has adopted the
 * new one (server.c's loop calls server_retire()).
 *
 * A drain stops the listeners, lets transactions finish and ends with
 * 421; shutdown.timeout bounds it (fast: shutdown.fast_timeout).
 *
 * Config keys: shutdown.*, and everything a generation holds.
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
#include "limits/caps.h"
#include "ops/control.h"
#include "config/generation.h"
#include "io/listen.h"
#include "lib/log.h"
#include "ops/metrics_http.h"
#include "ops/preflight.h"
#include "io/backend_pool.h"
#include "ops/privilege.h"
#include "limits/ratelimit.h"
#include "ops/registry.h"
#include "ops/server.h"
#include "ops/server_internal.h"
#include "ops/sdnotify.h"
#include "lib/timer.h"
#include "io/tls.h"
#include "io/worker.h"

/* The sockets worker k gets from set s built for cfg. */
struct worker_listener *
server_listeners_for(const struct listen_set *s, const struct config *cfg,
		     unsigned k)
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
void
server_retire(struct server *srv)
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

struct fixed_keys
server_fixed_keys(const struct config *cfg)
{
	struct fixed_keys k = {
		.workers = cfg->workers,
		.recv_buffers = cfg->recv_buffers,
		.data_buffers = cfg->data_buffers,
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

	snprintf(k.metrics_tls, sizeof(k.metrics_tls), "%s %s",
		 cfg->metrics_tls_cert ?: "-", cfg->metrics_tls_key ?: "-");
	snprintf(k.cluster, sizeof(k.cluster),
		 "%s %s %s %s %d %s %s %s %" PRIu64 " %d %d",
		 cfg->cluster_redis.text, cfg->cluster_username ?: "-",
		 cfg->cluster_password_file ?: "-", cfg->cluster_prefix,
		 cfg->cluster_tls, cfg->cluster_tls_ca ?: "-",
		 cfg->cluster_tls_name ?: "-", cfg->cluster_node_id,
		 cfg->cluster_timeout_ms, cfg->cluster_fail_closed,
		 cfg->cluster_share_files);
	snprintf(k.auth, sizeof(k.auth),
		 "%d %s %u %" PRIu64 " %" PRIu64 " %s%s %u %" PRIu64
		 " %" PRIu64,
		 (int)cfg->auth_backend, cfg->auth_dovecot_socket.text,
		 cfg->auth_dovecot_connections, cfg->auth_dovecot_timeout_ms,
		 cfg->auth_dovecot_cache_ttl_ms, cfg->auth_http_host,
		 cfg->auth_http_path, cfg->auth_http_connections,
		 cfg->auth_http_timeout_ms, cfg->auth_http_cache_ttl_ms);
	return k;
}

/* One restart-only key that differs: logged, and told to the caller of
 * a reload (report, or NULL) at the line the new file sets it. */
static void
ignored(FILE *report, const struct config *cfg, const char *key,
	const char *section, const char *was, const char *now)
{
	char where[1024];

	log_warn("reload-ignored", " key=%s detail=\"%s\"", key,
		 "differs from the running value: takes effect at restart");
	if (report == NULL)
		return;
	config_fail(cfg, key, section, where, sizeof(where),
		    "changed from %s to %s: takes effect at restart (the "
		    "running value stays until then)",
		    was, now);
	fprintf(report, "warning: %s\n", where);
}

/* The same, for keys whose values are not worth printing. */
static void
ignored_key(FILE *report, const struct config *cfg, const char *key,
	    const char *section)
{
	char where[1024];

	log_warn("reload-ignored", " key=%s detail=\"%s\"", key,
		 "differs from the running value: takes effect at restart");
	if (report == NULL)
		return;
	config_fail(cfg, key, section, where, sizeof(where),
		    "changed: takes effect at restart (the running value "
		    "stays until then)");
	fprintf(report, "warning: %s\n", where);
}

/* Say which restart-only keys differ from what is running. */
static void
warn_fixed(const struct server *srv, const struct config *cfg, FILE *report)
{
	const struct fixed_keys *run = &srv->fixed,
				now = server_fixed_keys(cfg);
	const char *sock = cfg->control_socket;
	char was[32], is[32], why[1024], q[4 * 1024 + 3];

	if (run->workers != now.workers) {
		snprintf(was, sizeof(was), "%u", run->workers);
		snprintf(is, sizeof(is), "%u", now.workers);
		ignored(report, cfg, "workers", NULL, was, is);
	}
	if (run->recv_buffers != now.recv_buffers ||
	    run->data_buffers != now.data_buffers)
		ignored_key(report, cfg, "worker_buffers", "worker_buffers");
	if (run->auth_threads != now.auth_threads ||
	    run->auth_cache_ttl_ms != now.auth_cache_ttl_ms ||
	    run->auth_cache_size != now.auth_cache_size)
		ignored_key(report, cfg,
			    run->auth_threads != now.auth_threads
				    ? "auth.threads"
			    : run->auth_cache_size != now.auth_cache_size
				    ? "auth.cache_size"
				    : "auth.cache_ttl",
			    "auth");
	if (strcmp(run->auth, now.auth) != 0)
		ignored_key(report, cfg, "auth.backend", "auth");
	if (run->ticket_key_lifetime_ms != now.ticket_key_lifetime_ms)
		ignored_key(report, cfg, "tls.ticket_key_lifetime", "tls");
	if ((srv->control_path == NULL) != (sock == NULL) ||
	    (sock != NULL && strcmp(srv->control_path, sock) != 0) ||
	    run->control_mode != now.control_mode) {
		ignored_key(report, cfg,
			    run->control_mode != now.control_mode
				    ? "control.mode"
				    : "control.socket",
			    "control");
		/* What the next start would say of a new path, said now
		 * (the running one is in use: nothing to check). */
		if (sock != NULL &&
		    (srv->control_path == NULL ||
		     strcmp(srv->control_path, sock) != 0) &&
		    preflight_control_socket(cfg, why, sizeof(why)) != 0) {
			log_warn("reload-ignored",
				 " key=control.socket detail=%s",
				 log_quote(q, sizeof(q), why, strlen(why)));
			if (report != NULL)
				fprintf(report,
					"warning: %s (the next start fails)\n",
					why);
		}
	}
	if (run->xdp_enabled != now.xdp_enabled ||
	    run->nxdp_interfaces != now.nxdp_interfaces ||
	    run->xdp_mode != now.xdp_mode || run->xdp_scope != now.xdp_scope)
		ignored_key(report, cfg, "blocklist.xdp", "blocklist");
	if (run->run_uid != now.run_uid || run->run_gid != now.run_gid ||
	    run->seccomp != now.seccomp)
		ignored_key(report, cfg, "privileges", NULL);
	if (run->metrics_listen.len != now.metrics_listen.len ||
	    strcmp(run->metrics_listen.text, now.metrics_listen.text) != 0)
		ignored_key(report, cfg, "metrics.listen", "metrics");
	if (strcmp(run->metrics_tls, now.metrics_tls) != 0)
		ignored_key(report, cfg, "metrics.tls", "metrics");
	if (strcmp(run->cluster, now.cluster) != 0)
		ignored_key(report, cfg, "cluster", "cluster");
}

uint64_t
server_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Give gen's listeners and backends their registry slots.  A backend
 * that the running generation does not have starts enabled (it may have
 * been disabled, removed and now added again). */
void
server_bind_generation(struct server *srv, struct generation *gen,
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

/* What the audit of a reloaded config found: the first error (for the
 * caller's err), and every other finding for its report. */
struct reload_vet {
	FILE *report; /* or NULL */
	char first[1024];
	unsigned errors;
};

/* Audit findings of a reloaded config: logged, as at a start, and kept
 * for the caller. */
static void
audit_logged(void *ctx, enum audit_level level, const char *text)
{
	struct reload_vet *v = ctx;
	char q[1200];

	log_msg(level == AUDIT_ERROR ? LOG_ERROR : LOG_WARN, "config-warning",
		" detail=%s", log_quote(q, sizeof(q), text, strlen(text)));
	if (level == AUDIT_ERROR && v->errors++ == 0)
		snprintf(v->first, sizeof(v->first), "%s", text);
	else if (v->report != NULL)
		fprintf(v->report, "%s: %s\n",
			level == AUDIT_ERROR ? "error" : "warning", text);
}

/* A reloaded config is audited as at a start: warnings logged and
 * reported, errors refuse it. */
static int
vet_reload(const struct config *cfg, void *arg, char *err, size_t errlen)
{
	struct reload_vet *v = arg;

	if (audit_config(cfg, time(NULL), audit_logged, v).errors == 0)
		return 0;
	snprintf(err, errlen, "%s", v->first);
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
server_reload(struct server *srv, FILE *report, char *err, size_t errlen)
{
	struct reload_vet vet = {.report = report};
	struct generation *gen;
	struct listen_set next;
	char warn[256];

	if (srv->draining) {
		snprintf(err, errlen, "draining: no reload");
		return -1;
	}
	if (srv->nretiring == RETIRE_MAX) {
		server_retire(srv);
		if (srv->nretiring == RETIRE_MAX) {
			snprintf(err, errlen,
				 "workers have not taken the "
				 "last reloads yet; try again");
			return -1;
		}
	}
	sdnotify_reloading(); /* READY=1 follows, at either end below */
	gen = generation_load(srv->path, srv->next_id, srv->nworkers,
			      vet_reload, &vet, err, errlen);
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
	server_cluster_files(srv, gen->cfg);
	generation_set_mechs(gen, auth_backend_offer(srv->shared.auth));
	backend_pool_inherit(gen->backend_pool, srv->gen->backend_pool);
	server_bind_generation(srv, gen, srv->gen);
	warn_fixed(srv, gen->cfg, report);
	if (ratelimit_reconfigure(srv->shared.limits, gen->cfg, warn,
				  sizeof(warn))) {
		log_warn("reload-ignored", " key=limits detail=\"%s\"", warn);
		if (report != NULL) {
			char where[512];

			config_fail(gen->cfg, "limits", NULL, where,
				    sizeof(where), "%s", warn);
			fprintf(report, "warning: %s\n", where);
		}
	}
	reconfigure_log(gen->cfg);
	for (unsigned k = 0; k < srv->nworkers; k++) {
		struct worker_listener *ls =
			server_listeners_for(&next, gen->cfg, k);

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
	srv->loaded_wall_ms = server_wall_ms();
	srv->resolved_ms = timer_now_ms(); /* names were just looked up */
	log_info("reloaded",
		 " generation=%u listeners=%zu backends=%zu users=%zu", gen->id,
		 gen->cfg->nlisteners, gen->cfg->nbackends,
		 passwd_db_count(gen->users));
	sdnotify("READY=1\nSTATUS=Ready: generation %u (reloaded)", gen->id);
	return 0;
fail:
	srv->reload_failures++;
	srv->last_reload_ok = false;
	log_error("reload-failed", " generation=%u error=\"%s\"", srv->gen->id,
		  err);
	sdnotify("READY=1\nSTATUS=Ready: generation %u; the reload failed: %s",
		 srv->gen->id, err);
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
		sdnotify("STOPPING=1\nSTATUS=Draining: %" PRIu64
			 " ms for the sessions to finish",
			 timeout);
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
