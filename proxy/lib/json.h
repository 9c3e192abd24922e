/*
 * json.h - a JSON string for the operator endpoints (status, admin,
 * msaproxyctl's JSON): quotes, backslashes and control bytes escaped.
 */
#ifndef MSAPROXY_JSON_H
#define MSAPROXY_JSON_H

#include <stdio.h>

/* "s" with its quotes, backslashes and control bytes (and DEL) escaped;
 * NULL writes "". */
void json_str(FILE *out, const char *s);

#endif
