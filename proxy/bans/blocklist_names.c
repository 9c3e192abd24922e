/*
 * blocklist_names.c - the names of the blocklist's modes, scopes and
 * reasons, as the config, the logs, the control socket and the metrics
 * spell them, and their parsing.
 *
 * Config keys: blocklist.xdp.mode, blocklist.xdp.scope (parsed here for the
 * loader).
 */
#include <string.h>

#include "bans/blocklist.h"

const char *
blocklist_reason_name(enum blocklist_reason r)
{
	switch (r) {
	case BLOCKLIST_REASON_FILE:
		return "file";
	case BLOCKLIST_REASON_MANUAL:
		return "manual";
	case BLOCKLIST_REASON_AUTO:
		return "auto";
	case BLOCKLIST_REASON_COUNT:
		break;
	}
	return "?";
}

const char *
blocklist_mode_name(enum blocklist_mode m)
{
	switch (m) {
	case BLOCKLIST_MODE_AUTO:
		return "auto";
	case BLOCKLIST_MODE_NATIVE:
		return "native";
	case BLOCKLIST_MODE_GENERIC:
		return "generic";
	}
	return "?";
}

int
blocklist_mode_parse(const char *s, enum blocklist_mode *out)
{
	if (strcmp(s, "auto") == 0)
		*out = BLOCKLIST_MODE_AUTO;
	else if (strcmp(s, "native") == 0)
		*out = BLOCKLIST_MODE_NATIVE;
	else if (strcmp(s, "generic") == 0)
		*out = BLOCKLIST_MODE_GENERIC;
	else
		return -1;
	return 0;
}

int
blocklist_scope_parse(const char *s, enum blocklist_scope *out)
{
	if (strcmp(s, "all") == 0)
		*out = BLOCKLIST_SCOPE_ALL;
	else if (strcmp(s, "tcp-ports") == 0)
		*out = BLOCKLIST_SCOPE_TCP_PORTS;
	else
		return -1;
	return 0;
}
