/*
 * generation.c - load a configuration generation, count its references.
 *
 * Loading reads files (config, users, certificates and keys): it runs on
 * the main thread, at start-up and on reload, never on a worker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "auth/passwd_db.h"
#include "ops/counters.h"
#include "config/generation.h"
#include "io/backend_pool.h"
#include "io/tls.h"

static bool
class_exists(const char *name, void *cfg)
{
	return config_class_find(cfg, name) != NULL;
}

static void
init_params(struct generation *g)
{
	const struct config *cfg = g->cfg;

	for (int m = 0; m < 2; m++) {
		struct smtp_params *p = &g->params[m];

		p->hostname = cfg->hostname;
		p->mode = (enum listener_mode)m;
		p->auth_mechs = cfg->auth_mechs;
		p->max_line = cfg->max_line;
		p->max_auth_line = cfg->max_auth_line;
		p->max_message_size = cfg->max_message_size;
		p->max_recipients = cfg->max_recipients;
		p->max_errors = cfg->max_errors;
		p->max_auth_failures = cfg->auth_max_failures;
	}
}

void
generation_set_mechs(struct generation *g, const atomic_uint *live)
{
	for (int m = 0; m < 2; m++)
		g->params[m].mechs_live = live;
}

/* The number of workers cfg asks for (0: one per online CPU). */
static unsigned
generation_workers(const struct config *cfg)
{
	long n;

	if (cfg->workers > 0)
		return cfg->workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void
generation_free(struct generation *g)
{
	for (unsigned i = 0; i < g->ntls; i++)
		tls_server_free(g->tls[i]);
	free(g->tls);
	for (size_t i = 0; g->backend_tls && i < g->cfg->nbackends; i++)
		SSL_CTX_free(g->backend_tls[i]);
	free(g->backend_tls);
	free(g->listener_slot);
	free(g->cert_expiry);
	backend_pool_free(g->backend_pool);
	passwd_db_free(g->users);
	passwd_db_free(g->admin_users);
	config_free(g->cfg);
	free(g);
}

struct generation *
generation_load(const char *path, unsigned id, unsigned ntls,
		int (*vet)(const struct config *cfg, void *arg, char *err,
			   size_t errlen),
		void *arg, char *err, size_t errlen)
{
	struct generation *g = calloc(1, sizeof(*g));
	struct tls_server *probe;
	char why[768];

	if (g == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&g->refs, 1);
	g->id = id;
	if (config_load(path, &g->cfg, err, errlen) != 0)
		goto fail;
	if (vet != NULL && vet(g->cfg, arg, err, errlen) != 0)
		goto fail;
	/* Without a passwd file (another auth.backend) no user has a
	 * class from it: an empty one. */
	g->users =
		g->cfg->passwd_file != NULL
			? passwd_db_load(g->cfg->passwd_file, why, sizeof(why))
			: passwd_db_empty(why, sizeof(why));
	if (g->users == NULL ||
	    passwd_db_check_classes(g->users, class_exists, g->cfg, why,
				    sizeof(why)) != 0) {
		config_fail(g->cfg, "auth.passwd_file", "auth", err, errlen,
			    "%s", why);
		goto fail;
	}
	if (g->cfg->metrics_admin_users != NULL &&
	    (g->admin_users = passwd_db_load(g->cfg->metrics_admin_users, why,
					     sizeof(why))) == NULL) {
		config_fail(g->cfg, "metrics.admin_users", "metrics", err,
			    errlen, "%s", why);
		goto fail;
	}
	g->backend_pool = backend_pool_new(g->cfg);
	g->backend_tls = calloc(g->cfg->nbackends, sizeof(*g->backend_tls));
	g->listener_slot =
		calloc(g->cfg->nlisteners, sizeof(*g->listener_slot));
	if (g->backend_pool == NULL || g->backend_tls == NULL ||
	    g->listener_slot == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < g->cfg->nbackends; i++) {
		if (g->cfg->backends[i].tls == BACKEND_TLS_NONE)
			continue;
		g->backend_tls[i] = tls_backend_ctx_new(&g->cfg->backends[i],
							why, sizeof(why));
		if (g->backend_tls[i] == NULL) {
			char key[64];

			snprintf(key, sizeof(key), "backends.servers[%zu].%s",
				 i,
				 g->cfg->backends[i].ca_file ? "ca_file"
							     : "tls");
			config_fail(g->cfg, key, "backends.servers", err,
				    errlen, "%s", why);
			goto fail;
		}
	}
	if (ntls == GENERATION_PER_WORKER)
		ntls = generation_workers(g->cfg);
	if (ntls == 0) {
		probe = tls_server_new(g->cfg, 0, err, errlen);
		if (probe == NULL)
			goto fail;
		tls_server_free(probe);
	} else {
		g->tls = calloc(ntls, sizeof(*g->tls));
		if (g->tls == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (; g->ntls < ntls; g->ntls++) {
			g->tls[g->ntls] =
				tls_server_new(g->cfg, g->ntls, err, errlen);
			if (g->tls[g->ntls] == NULL)
				goto fail;
		}
	}
	g->cert_expiry = calloc(g->cfg->ncerts + 1, sizeof(*g->cert_expiry));
	if (g->cert_expiry == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < g->cfg->ncerts; i++)
		g->cert_expiry[i] =
			tls_cert_file_expiry(g->cfg->certs[i].cert_file);
	init_params(g);
	return g;
fail:
	generation_free(g);
	return NULL;
}

unsigned
generation_listener_slot(const struct generation *g,
			 const struct config_listener *l)
{
	const struct config_listener *first = g->cfg->listeners;

	if (l < first || l >= first + g->cfg->nlisteners)
		return COUNTERS_LISTENERS - 1; /* not this generation's */
	return g->listener_slot[l - first];
}

struct generation *
generation_hold(struct generation *g)
{
	atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void
generation_drop(struct generation *g)
{
	if (g != NULL &&
	    atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
		generation_free(g);
}
