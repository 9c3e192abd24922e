/*
 * auth_request.c - what the Dovecot and auth_http threads do alike with a
 * request: queue it, wipe its secrets once they are on their way, and
 * answer it.  Declared in auth_backend.h, next to struct auth_request.
 */
#include <stdio.h>

#include <openssl/crypto.h>

#include "auth/auth_backend.h"

void
auth_request_queue(struct auth_request **head, struct auth_request **tail,
		   struct auth_request *fifo, uint64_t deadline_ms)
{
	struct auth_request *t;

	if (fifo == NULL)
		return;
	for (t = fifo;; t = t->next) {
		t->deadline_ms = deadline_ms;
		if (t->next == NULL)
			break;
	}
	if (*tail != NULL)
		(*tail)->next = fifo;
	else
		*head = fifo;
	*tail = t;
}

void
auth_request_sent(struct auth_request *req)
{
	if (!req->keep_pass) /* else the seam wipes it, after its cache */
		OPENSSL_cleanse(req->pass, sizeof(req->pass));
	if (req->token != NULL)
		OPENSSL_cleanse(req->token, req->token_len);
	if (req->oauth_resp != NULL)
		OPENSSL_cleanse(req->oauth_resp, req->oauth_resp_len);
}

void
auth_request_answer(struct auth_request *req, int ok, int temp,
		    const char *reason)
{
	auth_request_sent(req);
	req->ok = ok;
	req->temp = ok ? 0 : temp;
	req->cached = 0;
	if (reason != NULL && req->reason[0] == '\0')
		snprintf(req->reason, sizeof(req->reason), "%s", reason);
	req->next = NULL;
	if (req->done != NULL)
		req->done(req); /* may free req */
}

void
auth_request_answer_all(struct auth_request *list, const char *reason)
{
	while (list != NULL) {
		struct auth_request *next = list->next;

		auth_request_answer(list, 0, 1, reason);
		list = next;
	}
}
