/*
 * upstream.c - the dialogue with a backend MTA, as tables.
 *
 * Read upstream.h first.  The handshake is handshake[]: in each state,
 * the reply codes that let it go on, the step a failure is logged under,
 * and the move that follows; moves[] says what each move sends, the state
 * it leaves and what the I/O side is told (the shape of OpenSMTPD's
 * mta_session and nginx's mail proxy: a state, the reply it waits for,
 * what goes out next).  The one row that decides
 * is the first EHLO's: what the server offers picks STARTTLS, XCLIENT,
 * ready, or, for a check, the verdict (offers_move()).  Once ready, the
 * relay states take one client command at a time.  Every change of state
 * goes through upstream_set_state(), the tracing hook.
 *
 * XCLIENT before EHLO: Postfix (and smtp-sink) take XCLIENT right after
 * the greeting, and since the EHLO after XCLIENT has to be sent anyway,
 * the first EHLO only serves to read the attribute list.  A session that
 * is given the list (learned by an earlier session or a check) sends
 * XCLIENT at once (greeted_move()); a refusal there (not 421) is not a
 * failure: the EHLO goes after all and the dialogue runs as before.  Only
 * when the server then takes the same XCLIENT after EHLO was the order
 * what it refused (not a value of this client's, nor an attribute it no
 * longer lists), and the I/O side is told to stop trying
 * (UPSTREAM_ACT_EHLO_FIRST, ehlo_first()).
 *
 * Trust: the server is not trusted.  Its replies arrive parsed and
 * bounded (smtp_reply.c); only their codes and, in the EHLO reply, the
 * STARTTLS and XCLIENT keywords are read.  A server that should do TLS
 * but does not offer STARTTLS fails: nothing is ever sent in plaintext
 * instead.  A server configured for XCLIENT that does not offer it
 * fails.  The XCLIENT attribute list is copied bounded (255 bytes) and
 * only names what xclient.c sends.  Lines written here are bounded by
 * UPSTREAM_LINE_MAX and always end with CRLF; after a failure nothing is
 * written.
 *
 * Config keys (through struct upstream_params): backends.servers[].
 * identity and .tls, hostname (our EHLO name).
 *
 * Standards: RFC 5321 (EHLO, 220/250), RFC 3207 (STARTTLS; anything sent
 * after its 220 is the I/O side's to drop), Postfix XCLIENT_README (220
 * or 250 after XCLIENT, then EHLO again).
 */
#include <stdio.h>
#include <string.h>

#include "smtp/upstream.h"

/* What follows an accepted reply. */
enum upstream_move {
	MOVE_GREETED,	  /* EHLO, or XCLIENT at once (greeted_move()) */
	MOVE_EHLO,	  /* EHLO with our name */
	MOVE_OFFERS,	  /* what the EHLO reply offers decides */
	MOVE_STARTTLS,	  /* STARTTLS */
	MOVE_START_TLS,	  /* the I/O side's TLS handshake */
	MOVE_XCLIENT,	  /* the client's facts, then XCLIENT */
	MOVE_EHLO_CLIENT, /* EHLO with the client's name */
	MOVE_READY,	  /* the client's commands may go */
	MOVE_GOOD,	  /* check: usable, QUIT */
};

enum line_kind {
	LINE_NONE,
	LINE_EHLO,	  /* our hostname */
	LINE_EHLO_CLIENT, /* the client's EHLO name (ours without one) */
	LINE_STARTTLS,
	LINE_QUIT,
};

/* The handshake: per state, the codes that go on, the failure step and
 * the move. */
static const struct handshake_row {
	enum upstream_state state;
	int ok[2]; /* 0: unused */
	const char *step;
	enum upstream_move move;
} handshake[] = {
	{UPSTREAM_GREETING, {220, 0}, "greeting", MOVE_GREETED},
	{UPSTREAM_EHLO, {250, 0}, "ehlo", MOVE_OFFERS},
	{UPSTREAM_STARTTLS, {220, 0}, "starttls", MOVE_START_TLS},
	/* Postfix answers with a fresh 220 greeting, smtp-sink and older
	 * servers with 250: either way, EHLO again. */
	{UPSTREAM_XCLIENT, {220, 250}, "xclient", MOVE_EHLO_CLIENT},
	{UPSTREAM_EHLO_AGAIN, {250, 0}, "ehlo", MOVE_READY},
};

/* Each move: the line it sends, the state it leaves, the action.
 * MOVE_GREETED and MOVE_OFFERS have no row: greeted_move() and
 * offers_move() pick one of the others. */
static const struct move_row {
	enum line_kind line;
	enum upstream_state next;
	enum upstream_action act;
} moves[] = {
	[MOVE_EHLO] = {LINE_EHLO, UPSTREAM_EHLO, UPSTREAM_ACT_SEND},
	[MOVE_STARTTLS] = {LINE_STARTTLS, UPSTREAM_STARTTLS, UPSTREAM_ACT_SEND},
	[MOVE_START_TLS] = {LINE_NONE, UPSTREAM_TLS, UPSTREAM_ACT_START_TLS},
	[MOVE_XCLIENT] = {LINE_NONE, UPSTREAM_XCLIENT, UPSTREAM_ACT_XCLIENT},
	[MOVE_EHLO_CLIENT] = {LINE_EHLO_CLIENT, UPSTREAM_EHLO_AGAIN,
			      UPSTREAM_ACT_SEND},
	[MOVE_READY] = {LINE_NONE, UPSTREAM_READY, UPSTREAM_ACT_READY},
	[MOVE_GOOD] = {LINE_QUIT, UPSTREAM_QUIT, UPSTREAM_ACT_GOOD},
};

static const char *const state_names[] = {
	[UPSTREAM_NONE] = "none",
	[UPSTREAM_CONNECTING] = "connecting",
	[UPSTREAM_GREETING] = "greeting",
	[UPSTREAM_EHLO] = "ehlo",
	[UPSTREAM_STARTTLS] = "starttls",
	[UPSTREAM_TLS] = "tls",
	[UPSTREAM_XCLIENT] = "xclient",
	[UPSTREAM_EHLO_AGAIN] = "ehlo-again",
	[UPSTREAM_READY] = "ready",
	[UPSTREAM_WAIT_REPLY] = "wait-reply",
	[UPSTREAM_DATA] = "data",
	[UPSTREAM_WAIT_DATA_END] = "wait-data-end",
	[UPSTREAM_QUIT] = "quit",
	[UPSTREAM_FAILED] = "failed",
};

/* The one place the state changes. */
static void
upstream_set_state(struct upstream *u, enum upstream_state st)
{
	enum upstream_state from = u->state;

	u->state = st;
	if (u->trace != NULL && from != st)
		u->trace(u->trace_ctx, from, st);
}

/* The dialogue ends here: nothing more is sent. */
static enum upstream_action
upstream_fail_at(struct upstream *u, const char *step, const char *detail)
{
	u->step = step;
	snprintf(u->detail, sizeof(u->detail), "%s", detail);
	u->len = 0;
	u->line[0] = '\0';
	upstream_set_state(u, UPSTREAM_FAILED);
	return UPSTREAM_ACT_FAIL;
}

/* A reply the row does not take: a session logs the code as a detail,
 * a check keeps its terse reason ("greeting: 554"). */
static enum upstream_action
fail_code(struct upstream *u, const char *step, int code)
{
	char detail[32];

	snprintf(detail, sizeof(detail),
		 u->mode == UPSTREAM_CHECK ? "%d" : "unexpected reply %d",
		 code);
	return upstream_fail_at(u, step, detail);
}

static const struct handshake_row *
handshake_row(enum upstream_state st)
{
	for (size_t i = 0; i < sizeof(handshake) / sizeof(*handshake); i++)
		if (handshake[i].state == st)
			return &handshake[i];
	return NULL;
}

/* The line a move sends into u->line; false when it does not fit. */
static bool
write_line(struct upstream *u, enum line_kind kind)
{
	const char *name = kind == LINE_EHLO_CLIENT && u->helo[0] != '\0'
				   ? u->helo
				   : u->hostname;
	int n;

	switch (kind) {
	case LINE_EHLO:
	case LINE_EHLO_CLIENT:
		n = snprintf(u->line, sizeof(u->line), "EHLO %s\r\n", name);
		break;
	case LINE_STARTTLS:
		n = snprintf(u->line, sizeof(u->line), "STARTTLS\r\n");
		break;
	case LINE_QUIT:
		n = snprintf(u->line, sizeof(u->line), "QUIT\r\n");
		break;
	default:
		n = 0;
		u->line[0] = '\0';
		break;
	}
	if (n < 0 || (size_t)n >= sizeof(u->line)) {
		u->line[0] = '\0';
		u->len = 0;
		return false;
	}
	u->len = (size_t)n;
	return true;
}

static enum upstream_action
upstream_apply(struct upstream *u, enum upstream_move m)
{
	const struct move_row *mv = &moves[m];

	if (!write_line(u, mv->line))
		return upstream_fail_at(u, "ehlo", "EHLO name too long");
	upstream_set_state(u, mv->next);
	if (m == MOVE_GOOD)
		snprintf(u->detail, sizeof(u->detail), "greeting and EHLO ok");
	return mv->act;
}

/* What the server's XCLIENT takes, bounded. */
static void
keep_attrs(struct upstream *u, const char *args, size_t alen)
{
	if (alen >= sizeof(u->xclient_attrs))
		alen = sizeof(u->xclient_attrs) - 1;
	memcpy(u->xclient_attrs, args, alen);
	u->xclient_attrs[alen] = '\0';
}

/* The first EHLO's reply: what the server offers decides what follows.
 * A check asks for what this server is configured for (XCLIENT, then
 * STARTTLS) and stops; a session starts TLS first, then XCLIENT. */
static enum upstream_action
offers_move(struct upstream *u, const struct smtp_reply *r)
{
	const char *args;
	size_t alen;

	if (u->mode == UPSTREAM_CHECK) {
		if (u->identity == IDENTITY_XCLIENT &&
		    !smtp_reply_has_ext(r, "XCLIENT", &args, &alen))
			return upstream_fail_at(u, "ehlo",
						"XCLIENT not offered");
		if (u->identity == IDENTITY_XCLIENT)
			keep_attrs(u, args, alen);
		if (u->starttls &&
		    !smtp_reply_has_ext(r, "STARTTLS", NULL, NULL))
			return upstream_fail_at(u, "ehlo",
						"STARTTLS not offered");
		return upstream_apply(u, MOVE_GOOD);
	}
	if (u->starttls && !u->tls_up) {
		/* Should do TLS but does not: down for us, never plaintext. */
		if (!smtp_reply_has_ext(r, "STARTTLS", NULL, NULL))
			return upstream_fail_at(
				u, "starttls",
				"backend does not offer STARTTLS");
		return upstream_apply(u, MOVE_STARTTLS);
	}
	if (u->identity != IDENTITY_XCLIENT)
		return upstream_apply(u, MOVE_READY);
	if (!smtp_reply_has_ext(r, "XCLIENT", &args, &alen))
		return upstream_fail_at(u, "xclient",
					"backend does not offer XCLIENT");
	keep_attrs(u, args, alen);
	return upstream_apply(u, MOVE_XCLIENT);
}

/* The greeting was good: XCLIENT at once when its attributes are known
 * (upstream_early()), else EHLO. */
static enum upstream_action
greeted_move(struct upstream *u)
{
	return upstream_apply(u, upstream_early(u) ? MOVE_XCLIENT : MOVE_EHLO);
}

/* A refusal of the XCLIENT sent before EHLO: the EHLO goes after all,
 * and the dialogue runs as if nothing had been tried.  421 (closing)
 * and a refusal after EHLO stay failures. */
static bool
early_refused(const struct upstream *u, const struct smtp_reply *r)
{
	return u->state == UPSTREAM_XCLIENT && upstream_early(u) &&
	       r->code != 421 && r->code >= 400;
}

/* The XCLIENT after EHLO went through where the same one before EHLO
 * was refused: the server wants EHLO first. */
static bool
ehlo_first(const struct upstream *u)
{
	return u->state == UPSTREAM_XCLIENT && u->early_code != 0 &&
	       xclient_attr_bits(u->xclient_attrs) == u->early_bits;
}

static enum upstream_action
upstream_handshake_reply(struct upstream *u, const struct handshake_row *row,
			 const struct smtp_reply *r)
{
	if (r->code != row->ok[0] &&
	    (row->ok[1] == 0 || r->code != row->ok[1])) {
		if (!early_refused(u, r))
			return fail_code(u, row->step, r->code);
		u->early_code = r->code;
		u->xclient_attrs[0] = '\0';
		return upstream_apply(u, MOVE_EHLO);
	}
	if (row->move == MOVE_GREETED)
		return greeted_move(u);
	if (ehlo_first(u)) {
		enum upstream_action a = upstream_apply(u, row->move);

		return a == UPSTREAM_ACT_SEND ? UPSTREAM_ACT_EHLO_FIRST : a;
	}
	if (row->move == MOVE_OFFERS)
		return offers_move(u, r);
	return upstream_apply(u, row->move);
}

void
upstream_init(struct upstream *u, const struct upstream_params *p)
{
	memset(u, 0, sizeof(*u));
	u->state = UPSTREAM_NONE;
	u->mode = p->mode;
	u->identity = p->identity;
	u->starttls = p->starttls;
	u->hostname = p->hostname != NULL ? p->hostname : "";
	u->step = "";
	if (p->mode == UPSTREAM_SESSION && p->identity == IDENTITY_XCLIENT &&
	    !p->starttls && p->xclient_early != 0) {
		u->early_bits = p->xclient_early;
		xclient_attr_list(p->xclient_early, u->xclient_attrs,
				  sizeof(u->xclient_attrs));
	}
}

void
upstream_connecting(struct upstream *u)
{
	if (u->state == UPSTREAM_NONE)
		upstream_set_state(u, UPSTREAM_CONNECTING);
}

void
upstream_connected(struct upstream *u)
{
	if (u->state == UPSTREAM_CONNECTING)
		upstream_set_state(u, UPSTREAM_GREETING);
}

enum upstream_action
upstream_reply(struct upstream *u, const struct smtp_reply *r)
{
	const struct handshake_row *row = handshake_row(u->state);
	bool verdict;

	u->len = 0;
	u->line[0] = '\0';
	if (row != NULL)
		return upstream_handshake_reply(u, row, r);
	switch (u->state) {
	case UPSTREAM_FAILED:
		return UPSTREAM_ACT_FAIL;
	case UPSTREAM_QUIT:
		return UPSTREAM_ACT_WAIT; /* the answer to a check's QUIT */
	case UPSTREAM_WAIT_REPLY:
	case UPSTREAM_WAIT_DATA_END:
		if (r->code == 421)
			return upstream_fail_at(u, "reply", "backend said 421");
		verdict = u->state == UPSTREAM_WAIT_DATA_END;
		upstream_set_state(u, UPSTREAM_READY);
		return verdict ? UPSTREAM_ACT_VERDICT : UPSTREAM_ACT_RELAY;
	default:
		/* Nobody asked: "421 timeout" while idle, a reply in the
		 * middle of the message. */
		return upstream_fail_at(u, "reply", "unsolicited reply");
	}
}

enum upstream_action
upstream_xclient(struct upstream *u, const struct xclient_info *info)
{
	ssize_t n;
	size_t hl;

	if (u->state != UPSTREAM_XCLIENT)
		return u->state == UPSTREAM_FAILED ? UPSTREAM_ACT_FAIL
						   : UPSTREAM_ACT_WAIT;
	n = xclient_line(u->xclient_attrs, info, u->line, sizeof(u->line));
	if (n < 0)
		return upstream_fail_at(u, "xclient", "XCLIENT line too long");
	u->len = (size_t)n;
	/* A name that does not fit is left out: EHLO says ours. */
	hl = info->helo != NULL ? strlen(info->helo) : 0;
	if (hl >= sizeof(u->helo))
		hl = 0;
	if (hl > 0)
		memcpy(u->helo, info->helo, hl);
	u->helo[hl] = '\0';
	return UPSTREAM_ACT_SEND;
}

void
upstream_fail(struct upstream *u, const char *step, const char *detail)
{
	if (u->state != UPSTREAM_FAILED)
		upstream_fail_at(u, step, detail);
}

enum upstream_action
upstream_tls_done(struct upstream *u)
{
	if (u->state != UPSTREAM_TLS)
		return u->state == UPSTREAM_FAILED ? UPSTREAM_ACT_FAIL
						   : UPSTREAM_ACT_WAIT;
	u->tls_up = true;
	return upstream_apply(u, MOVE_EHLO);
}

bool
upstream_forward(struct upstream *u, enum upstream_fwd what)
{
	if (u->state != UPSTREAM_READY)
		return false;
	upstream_set_state(u, what == UPSTREAM_FWD_CHUNK ? UPSTREAM_DATA
							 : UPSTREAM_WAIT_REPLY);
	return true;
}

void
upstream_data_begin(struct upstream *u)
{
	if (u->state == UPSTREAM_READY)
		upstream_set_state(u, UPSTREAM_DATA);
}

void
upstream_data_sent(struct upstream *u, bool verdict)
{
	if (u->state == UPSTREAM_DATA)
		upstream_set_state(u, verdict ? UPSTREAM_WAIT_DATA_END
					      : UPSTREAM_WAIT_REPLY);
}

bool
upstream_proxy_header(const struct upstream *u)
{
	return u->identity == IDENTITY_PROXY_V2;
}

bool
upstream_in_handshake(const struct upstream *u)
{
	return u->state >= UPSTREAM_CONNECTING &&
	       u->state <= UPSTREAM_EHLO_AGAIN;
}

bool
upstream_waiting(const struct upstream *u)
{
	return upstream_in_handshake(u) || u->state == UPSTREAM_WAIT_REPLY ||
	       u->state == UPSTREAM_WAIT_DATA_END;
}

const char *
upstream_state_name(enum upstream_state st)
{
	if ((size_t)st < sizeof(state_names) / sizeof(*state_names) &&
	    state_names[st] != NULL)
		return state_names[st];
	return "?";
}
