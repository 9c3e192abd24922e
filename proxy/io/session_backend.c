/*
 * session_backend.c - the session's side of its backend leg (backend.h):
 * open a connection for the command smtp.c forwarded, telling it who the
 * client is; and, each time the session runs, take the backend's news (a
 * failure, the end of its handshake, a reply), relay replies to smtp.c,
 * count and log delivered messages, and send the forwarded command once
 * the backend is ready.  The backend leg never calls the session: it
 * wakes it (ring_wake()), and this is where the session looks.
 *
 * Config keys: none of its own (backends.* through backend.c).
 */
#include <openssl/ssl.h>

#include "config/config_value.h"
#include "io/backend.h"
#include "io/ring.h"
#include "io/session.h"
#include "lib/log.h"

bool
session_pin_backend(struct session *s, const char *server, unsigned port)
{
	const struct config *cfg = session_config(s);
	struct config_addr want;
	char text[96];

	if (port == 0 || server[0] == '\0')
		return false;
	snprintf(text, sizeof(text),
		 strchr(server, ':') != NULL ? "[%s]:%u" : "%s:%u", server,
		 port);
	if (config_value_addr(text, &want) != NULL)
		return false;
	for (size_t i = 0; i < cfg->nbackends && i < 64; i++) {
		if (config_value_addr_equal(&cfg->backends[i].addr, &want)) {
			s->backend_pin = (uint8_t)(i + 1);
			return true;
		}
	}
	return false;
}

/* A connection for the forwarded command, told who the client is. */
void
session_open_backend(struct session *s)
{
	struct backend_owner o = {
		.ring = s->ring,
		.gen = s->gen,
		.link = &s->be,
		.wake = &s->wake,
		.client =
			{
				.id = s->id,
				.addr = &s->peer.sa,
				.fd = s->fd,
				.helo = s->smtp.helo_name,
				.login = smtp_user(&s->smtp),
				.pin = s->backend_pin,
			},
	};

	if (s->ssl != NULL && s->tls_done) {
		o.client.sni =
			SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
		o.client.tls_version = SSL_get_version(s->ssl);
		o.client.tls_cipher = SSL_get_cipher_name(s->ssl);
	}
	backend_open(&o);
}

/* A backend reply to the forwarded command: relayed by smtp.c, counted,
 * and for the end of a message logged. */
static void
backend_replied(struct session *s, const struct smtp_reply *r)
{
	const char *lines[SMTP_REPLY_LINES_MAX];
	size_t lens[SMTP_REPLY_LINES_MAX];
	bool data_end = s->smtp.state == SMTP_DATA_END;
	unsigned rcpts = s->smtp.rcpts; /* the reply may reset it */
	enum smtp_action act;

	for (size_t i = 0; i < r->nlines; i++) {
		lines[i] = r->raw + r->text_off[i];
		lens[i] = r->text_len[i];
	}
	act = smtp_backend_reply(&s->smtp, r->code, lines, lens, r->nlines);
	s->backend_used = backend_name(s->be);
	if (data_end && r->code >= 200 && r->code < 300) {
		s->recipients += rcpts;
		s->bytes += s->relay.ds.size;
		counter_add(&s->ring->counters.messages, 1);
	}
	if (data_end)
		session_log(s, LOG_INFO, "message",
			    " backend=%s size=%llu result=%d",
			    backend_name(s->be),
			    (unsigned long long)s->relay.ds.size, r->code);
	if (act == SMTP_ACT_DATA)
		relay_begin(&s->relay);
	backend_reply_done(s->be, act == SMTP_ACT_DATA);
}

/* The command smtp.c forwarded, to a backend that is ready for it.  A
 * BDAT's chunk streams right behind it. */
static void
send_forward(struct session *s)
{
	if (s->smtp.fwd == SMTP_FWD_BDAT) {
		smtp_chunk_begin(&s->smtp);
		if (relay_chunk_begin(&s->relay, &s->smtp))
			backend_command(s->be, s->smtp.fwd_line,
					s->smtp.fwd_len, true);
		return;
	}
	backend_command(s->be, s->smtp.fwd_line, s->smtp.fwd_len, false);
}

/* What the backend leg has for the session since it last looked
 * (backend.h): a failure, the end of its handshake, a reply; then the
 * forwarded command goes out once it is ready. */
void
session_backend_news(struct session *s)
{
	const struct smtp_reply *r;
	enum smtp_backend_failure why;
	uint64_t size;
	bool chunking;

	if (s->creq != NULL)
		return; /* the cluster's answer first: it may refuse */
	if (s->be == NULL) {
		/* Forwarded, and no backend could be reached. */
		if (s->smtp.state == SMTP_BACKEND)
			smtp_backend_failed(&s->smtp, SMTP_BACKEND_UNAVAILABLE);
		return;
	}
	if (backend_failed(s->be, &why)) {
		backend_close(&s->be, false);
		if (s->smtp.state == SMTP_DATA || s->smtp.state == SMTP_CHUNK) {
			relay_lost(&s->relay); /* 451 when the data ends */
			return;
		}
		if (s->smtp.state == SMTP_DATA_END) /* all of it, no verdict */
			session_log_refused(s, why == SMTP_BACKEND_TIMEOUT
						       ? "backend-timeout"
						       : "backend-lost");
		if (s->smtp.state == SMTP_BACKEND ||
		    s->smtp.state == SMTP_DATA_END || s->smtp.in_mail)
			smtp_backend_failed(&s->smtp, why);
		return;
	}
	if (backend_hello(s->be, &size, &chunking))
		smtp_backend_ready(&s->smtp, size, chunking);
	if ((r = backend_reply(s->be)) != NULL)
		backend_replied(s, r);
	if (s->smtp.state == SMTP_BACKEND && backend_ready(s->be))
		send_forward(s);
}
