/*
 * fuzz_metrics_http.c - libFuzzer target: the metrics listener's request
 * parser (metrics_http_parse_route(): /metrics, /status, /status.json).
 *
 * The input is what an HTTP client sends.  Checked: the status is one the
 * endpoint answers (0: more, 200, 400, 404, 405, 431), 200 names a known
 * route and only for GET (POST for /status/action), 431 only when the buffer is
 * full, every shorter prefix of a complete request is "more" or the same
 * verdict reached earlier (a verdict never changes as bytes are appended), the
 * /metrics-only parser agrees, and nothing is read past the input (ASan,
 * on an exact-size copy).
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "ops/metrics_http.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max = size < METRICS_HTTP_REQUEST_MAX ? METRICS_HTTP_REQUEST_MAX
						     : size;
	char *copy = xmalloc(size);
	enum metrics_http_route route = METRICS_ROUTE_METRICS, r2;
	int st, st2, plain;

	memcpy(copy, data, size);
	st = metrics_http_parse_route(copy, size, max, &route);
	CHECK(st == 0 || st == 200 || st == 400 || st == 404 || st == 405 ||
		      st == 431,
	      "status %d", st);
	if (st == 200) {
		CHECK(route == METRICS_ROUTE_METRICS ||
			      route == METRICS_ROUTE_STATUS ||
			      route == METRICS_ROUTE_STATUS_JSON ||
			      route == METRICS_ROUTE_ACTION,
		      "route %d", (int)route);
		CHECK(route == METRICS_ROUTE_ACTION
			      ? size >= 5 && memcmp(copy, "POST ", 5) == 0
			      : size >= 4 && memcmp(copy, "GET ", 4) == 0,
		      "200 for another method");
	}
	if (st == 431)
		CHECK(size >= max, "431 at %zu of %zu", size, max);
	plain = metrics_http_parse(copy, size, max);
	CHECK(plain == (st == 200 && route != METRICS_ROUTE_METRICS ? 404 : st),
	      "metrics_http_parse %d, route parser %d", plain, st);
	/* Appending bytes never changes a verdict already reached. */
	if (st != 0 && st != 431 && size < 2048) {
		char *more = xmalloc(size + 4);

		memcpy(more, copy, size);
		memcpy(more + size, "x\r\n\r", 4);
		st2 = metrics_http_parse_route(more, size + 4, max, &r2);
		CHECK(st2 == st, "verdict %d became %d", st, st2);
		if (st == 200)
			CHECK(r2 == route, "route %d became %d", (int)route,
			      (int)r2);
		free(more);
	}
	/* The admin form's fields: decoded within bounds, never a NUL. */
	{
		char out[64];

		if (metrics_http_form_field(copy, size, "op", out, sizeof(out)))
			CHECK(strlen(out) < sizeof(out), "field overflow");
	}
	free(copy);
	return 0;
}
