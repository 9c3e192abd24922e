/*
 * status_page.h - the status page's HTML (status_page.c), served as is by
 * metrics_http.c at GET /status.
 */
#ifndef MSAPROXY_STATUS_PAGE_H
#define MSAPROXY_STATUS_PAGE_H

#include <stddef.h>

extern const char status_page_html[];
extern const size_t status_page_html_len;

#endif
