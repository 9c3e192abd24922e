/*
 * json.c - a JSON string (RFC 8259 7): '"' and '\' escaped with a
 * backslash, control bytes and DEL as \u00XX, everything else as it is
 * (UTF-8 passes through).
 */
#include "lib/json.h"

void
json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}
