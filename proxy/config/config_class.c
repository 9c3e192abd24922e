/*
 * config_class.c - finding a limits class: by name, and by login through
 * limits.users (sorted by config_check.c, so a bsearch() finds one).
 * Read by the loader's checks and by the limit tables at AUTH.
 *
 * Config keys: limits.classes, limits.users (read, never parsed here).
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/config_internal.h"

/* limits.users is sorted by login (config_check.c): bsearch() finds one. */
int
config_user_class_cmp(const void *a, const void *b)
{
	const struct config_user_class *x = a, *y = b;

	return strcmp(x->login, y->login);
}

const struct config_class *
config_class_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nclasses; i++)
		if (strcmp(cfg->classes[i].name, name) == 0)
			return &cfg->classes[i];
	return NULL;
}

const struct config_class *
config_user_class(const struct config *cfg, const char *login)
{
	struct config_user_class k = {.login = (char *)login}, *u;

	if (cfg->nuser_classes == 0)
		return NULL;
	u = bsearch(&k, cfg->user_classes, cfg->nuser_classes,
		    sizeof(*cfg->user_classes), config_user_class_cmp);
	return u ? u->cls : NULL;
}
