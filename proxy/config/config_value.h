/*
 * config_value.h - the value parsers behind the config loader
 * (config_yaml.c, config_schema.c): durations, sizes, rates, addresses and
 * names, from one string each.  audit.c and passwd_db.c use them too, so
 * that their rules (a wildcard address, a class name) are the loader's;
 * the control socket takes config_parse_duration() from config.h.
 *
 * Every parser returns NULL on success, or the "why" that config_yaml.c puts
 * after "FILE:LINE: KEY: " (a static string).  On failure the output may
 * have been written to; callers that must keep a value untouched parse
 * into a temporary.  Durations are in milliseconds, sizes in bytes.
 */
#ifndef MSAPROXY_CONFIG_VALUE_H
#define MSAPROXY_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define SECOND UINT64_C(1000)
#define MINUTE (60 * SECOND)
#define HOUR   (60 * MINUTE)
#define DAY    (24 * HOUR)
#define KIB    UINT64_C(1024)
#define MIB    (1024 * KIB)
#define GIB    (1024 * MIB)

/* Leading decimal digits of s, *end after them: 0, -1 if there are none,
 * -2 on overflow. */
int config_value_digits(const char *s, const char **end, uint64_t *out);

/* "30s", "5m", "1h", "250ms", "2d": a unit is required. */
const char *config_value_duration(const char *s, uint64_t *ms);
/* "50MB", "512KB", "1GiB", "1000" (bytes); K/M/G are 1024 powers. */
const char *config_value_size(const char *s, uint64_t *bytes);
/* "COUNT/PERIOD [burst N]" or "off"/"0" (count 0: no limit); with bytes,
 * COUNT and N are sizes. */
const char *config_value_rate(const char *s, bool bytes, struct config_rate *r);
/* "1.2.3.4:25", "[::1]:25", "*:25"; host names refused. */
const char *config_value_addr(const char *s, struct config_addr *out);
/* "unix:/absolute/path" (backends only): AF_UNIX, path in sun_path. */
const char *config_value_unix_addr(const char *s, struct config_addr *out);

bool config_value_addr_is_wildcard(const struct config_addr *a);
bool config_value_addr_equal(const struct config_addr *a,
			     const struct config_addr *b);

/* A host name; with wildcard, "*.example.com" too. */
bool config_value_hostname(const char *s, bool wildcard);
/* 1 to 64 letters, digits, '_', '.' or '-'. */
bool config_value_class_name(const char *s);
/* A user or group name as useradd(8) takes it: 1 to 32 of [a-z0-9_-],
 * not starting with '-', an optional '$' at the end. */
bool config_value_account(const char *s);

/* n and ms in the largest unit that divides them, for range messages:
 * "4GB", "1000", "1m", "250ms". */
void config_value_format_size(char *buf, size_t len, uint64_t n);
void config_value_format_duration(char *buf, size_t len, uint64_t ms);

#endif
