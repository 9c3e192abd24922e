/*
 * config.h - the typed, validated configuration.
 *
 * config_load() reads one YAML file and fills a struct config, or refuses
 * it with "FILE:LINE: KEY: why" in err.  Every field has a default (see
 * conf/msaproxy.yaml, where each key is written with its default).  After
 * loading nothing changes it: workers read it without locks.  Durations are
 * held in milliseconds, sizes in bytes.
 */
#ifndef MSAPROXY_CONFIG_H
#define MSAPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

#include "lib/ipnet.h"
#include "smtp/sasl.h" /* AUTH_MECH_* */

enum listener_mode {
	LISTENER_STARTTLS, /* 587: plaintext greeting, STARTTLS required */
	LISTENER_IMPLICIT, /* 465: TLS from the first byte */
};

enum bare_newline_policy {
	BARE_NEWLINE_REJECT,	/* refuse the message (default) */
	BARE_NEWLINE_NORMALIZE, /* rewrite to CRLF and re-dot-stuff */
};

enum backend_identity {
	IDENTITY_NONE,
	IDENTITY_XCLIENT,
	IDENTITY_PROXY_V2, /* HAProxy PROXY protocol v2 header + TLVs */
};

enum backend_tls {
	BACKEND_TLS_NONE,
	BACKEND_TLS_STARTTLS,	     /* encrypt, do not check the certificate */
	BACKEND_TLS_STARTTLS_VERIFY, /* encrypt, verify chain and name */
};

enum balance_policy {
	BALANCE_ROUND_ROBIN, /* smooth weighted round robin (default) */
	BALANCE_LEAST_CONN,  /* fewest open connections per weight */
	BALANCE_HASH_LOGIN,  /* rendezvous hash of the login */
};

/* auth.backend: who checks a login (auth/auth_backend.h, docs/AUTH.md). */
enum auth_backend_kind {
	AUTH_BACKEND_PASSWD,  /* auth.passwd_file, crypt(3) (default) */
	AUTH_BACKEND_DOVECOT, /* Dovecot's auth socket (auth.dovecot.*) */
	AUTH_BACKEND_HTTP,    /* nginx-style auth_http (auth.http.*) */
};

#define BACKENDS_MAX 64 /* failover keeps a 64-bit "tried" mask */

struct config_addr {
	char text[128]; /* as written: "127.0.0.1:587", "[::1]:465",
			   "unix:/run/smtpd.sock" (backends only) */
	struct sockaddr_storage ss;
	socklen_t len;
};

enum xdp_mode {
	XDP_MODE_AUTO,	  /* native, else generic */
	XDP_MODE_NATIVE,  /* in the driver */
	XDP_MODE_GENERIC, /* after skb allocation: works everywhere */
};

enum xdp_scope {
	XDP_SCOPE_ALL,	     /* drop every packet of a blocked source */
	XDP_SCOPE_LISTENERS, /* only TCP to the listeners' ports */
};

/* A list of prefixes (allow/deny lists). */
struct config_nets {
	struct ipnet *v;
	size_t n;
};

struct config_listener {
	struct config_addr addr;
	enum listener_mode mode;
	struct config_nets allow; /* if any: only these clients */
	struct config_nets deny;  /* never these (wins over allow) */
	bool sender_check;	  /* MAIL FROM must be the user's own */
	int line;		  /* where it was declared, for messages */
	/* proxy_protocol: every connection opens with a PROXY v1 or v2
	 * header from one of these sources, naming the client. */
	bool proxy_protocol;
	struct config_nets proxy_trusted; /* at least one when set */
	uint64_t proxy_timeout_ms;	  /* for the whole header */
};

/* count units per period_ms, burst at once; count == 0: no limit. */
struct config_rate {
	uint64_t count;
	uint64_t period_ms;
	uint64_t burst;
};

/* What one authenticated user may send (limits.user, a class). */
struct config_user_limits {
	struct config_rate messages;
	struct config_rate recipients;
	struct config_rate bytes;
	struct config_rate messages_quota; /* fixed window, burst unused */
};

struct config_class {
	char *name;
	struct config_user_limits lim;
	int line;
};

/* limits.users: login -> class, sorted by login. */
struct config_user_class {
	char *login;
	char *class_name;
	const struct config_class *cls;
	int line;
};

struct config_cert {
	char *cert_file; /* PEM chain */
	char *key_file;	 /* PEM private key */
	char **names;	 /* SNI names ("*.example.com" allowed); may be 0 */
	size_t nnames;
	int line;
};

struct config_backend {
	/* A host name's address is one of its resolved addresses: text
	 * "HOST:PORT/IP" (the name, as the operator wrote it, and which
	 * address); host names it (NULL: an IP or unix: address as
	 * written).  config_resolve.c. */
	struct config_addr addr;
	char *host;	    /* "mx1.example.internal", or NULL */
	unsigned port;	    /* with host */
	unsigned name_ord;  /* the servers[] item it came from */
	unsigned weight;    /* 1..1000, default 1 */
	unsigned max_conns; /* all workers; 0 = no limit (default) */
	enum backend_identity identity; /* default xclient */
	enum backend_tls tls;		/* default none */
	char *ca_file;			/* starttls-verify; default: system */
	char *tls_name;			/* name to verify; default: address */
	int line;
};

/* Where a key was written, for messages after the load (audit.c). */
struct config_key_line {
	char *key; /* dotted path: "tls.ciphers", "listeners[1].address" */
	int line;
};

/* privileges.seccomp: what a worker thread's forbidden system call does. */
enum seccomp_mode {
	SECCOMP_OFF,
	SECCOMP_LOG, /* allowed, and logged by the kernel (audit) */
	SECCOMP_KILL /* the process is killed: a bug or an exploit */
};

struct config {
	char *path;
	struct config_key_line *key_lines; /* in file order */
	size_t nkey_lines;

	char hostname[256]; /* default: gethostname() */
	unsigned workers;   /* 0 = one per online CPU */
	/* worker_buffers: each worker's provided receive buffers (restart),
	 * powers of two: 16 KiB ones (default 512), 64 KiB ones for TLS
	 * message data (default 64).  docs/LIMITS.md, "Memory per worker". */
	unsigned recv_buffers, data_buffers;
	/* log: */
	int log_level;		 /* enum log_level; default info */
	int log_format;		 /* enum log_format; default kv */
	int log_output;		 /* enum log_output; default stderr */
	int log_facility;	 /* syslog facility code; default 2 (mail) */
	char *log_syslog_socket; /* default /dev/log */

	/* tls: */
	struct config_cert *certs; /* at least one */
	size_t ncerts;
	int tls_min_version;	/* TLS1_2_VERSION (default) or TLS1_3_VERSION */
	char *tls_ciphers;	/* TLS 1.2 cipher list */
	char *tls_ciphersuites; /* TLS 1.3 suites */
	char *tls_groups;	/* default "X25519:P-256" */
	bool tls_tickets;	/* default true */
	unsigned tls13_tickets; /* tickets per TLS 1.3 handshake, default 1 */
	uint64_t ticket_key_lifetime_ms; /* rotation, default 12h */
	uint64_t handshake_timeout_ms;	 /* default 10s */

	struct config_listener *listeners; /* at least one */
	size_t nlisteners;

	/* auth: */
	enum auth_backend_kind auth_backend; /* default passwd */
	char *passwd_file;		/* required with auth.backend passwd */
	unsigned auth_mechs;		/* AUTH_MECH_*; default PLAIN|LOGIN */
	unsigned auth_threads;		/* default 2 */
	uint64_t auth_failure_delay_ms; /* default 1s */
	unsigned auth_max_failures;	/* per session, default 3; 0: none */
	uint64_t auth_cache_ttl_ms;	/* verified logins, 0 = off; 1h */
	size_t auth_cache_size;		/* cached logins, default 10000 */
	/* auth.dovecot: (auth/auth_dovecot.h); restart-only */
	struct config_addr auth_dovecot_socket; /* len 0: not set */
	unsigned auth_dovecot_connections;	/* default 2 */
	uint64_t auth_dovecot_timeout_ms;	/* per request, default 5s */
	uint64_t auth_dovecot_cache_ttl_ms;	/* verified logins; 0 = off */
	/* auth.http: (auth/auth_http.h); restart-only */
	struct config_addr auth_http_addr; /* len 0: no auth.http.url */
	char auth_http_host[128];	   /* the URL's host[:port] */
	char auth_http_path[256];	   /* the URL's path, from '/' */
	unsigned auth_http_connections;	   /* at once, default 32 */
	uint64_t auth_http_timeout_ms;	   /* per request, default 5s */
	uint64_t auth_http_cache_ttl_ms;   /* verified logins; 0 = off */

	/* limits: */
	size_t max_line;	     /* command line, default 1000 (>= 512) */
	size_t max_auth_line;	     /* AUTH lines, default 12288 */
	uint64_t max_message_size;   /* default 50MB */
	unsigned max_recipients;     /* per message, default 100 */
	unsigned max_errors;	     /* per session, default 10 */
	unsigned max_sessions;	     /* all workers together, 10000 */
	uint64_t max_memory;	     /* allocator bytes, 0 = no cap (default) */
	uint64_t command_timeout_ms; /* default 5m */
	uint64_t data_timeout_ms;    /* between DATA reads, default 10m */
	enum bare_newline_policy bare_newlines; /* default reject */

	/* limits.user / classes / users (ratelimit.h): */
	struct config_user_limits user_limits;
	struct config_class *classes;
	size_t nclasses;
	struct config_user_class *user_classes;
	size_t nuser_classes;
	size_t max_users; /* tracked users, default 100000 */
	/* limits.login: */
	struct config_rate login_failures; /* default 5/10m */
	uint64_t login_max_delay_ms;	   /* default 30s */
	/* limits.ip: */
	unsigned ip_prefix_v4;		     /* default 32 */
	unsigned ip_prefix_v6;		     /* default 64 */
	struct config_rate ip_connections;   /* default 120/1m */
	unsigned ip_concurrency;	     /* 0 = none; default 50 */
	struct config_rate ip_auth_failures; /* default 10/10m */
	uint64_t ip_ban_time_ms;	     /* default 1h */
	struct config_nets ip_allow;	     /* never limited or banned */
	size_t ip_max_entries;		     /* default 100000 */

	/* blocklist: (bans.h) */
	char **blocklist_files; /* one prefix per line */
	size_t nblocklist_files;
	struct config_nets blocklist_allow; /* never blocked */
	bool blocklist_auto_ban;	    /* login bans too; default true */
	bool blocklist_ban_floods;	    /* connection-rate refusals */
	size_t blocklist_max_entries;	    /* per file, default 1000000 */
	/* blocklist.xdp: */
	bool xdp_enabled;
	char **xdp_interfaces;
	size_t nxdp_interfaces;
	enum xdp_mode xdp_mode;
	bool xdp_required; /* no XDP: refuse to start */
	char *xdp_pin_dir; /* default /sys/fs/bpf/msaproxy */
	enum xdp_scope xdp_scope;

	/* control: */
	char *control_socket;  /* unix socket for msaproxyctl; NULL: none */
	unsigned control_mode; /* its file mode, default 0600 */
	/* privileges: */
	char *run_user;	 /* switch to this user after start; NULL: stay */
	char *run_group; /* and this group; NULL: the user's primary group */
	uid_t run_uid;
	gid_t run_gid;
	enum seccomp_mode seccomp; /* worker threads' system call filter */
	/* metrics: */
	struct config_addr
		metrics_listen; /* Prometheus endpoint; .len 0: off */
	bool metrics_status; /* /status and /status.json there (default on) */
	bool metrics_admin;  /* its actions (POST, loopback, users file) */
	char *metrics_admin_users; /* admin logins from here, not the users
				      file; NULL: the users file */
	bool metrics_hash_logins;  /* the page shows hashes, not logins */
	char *metrics_tls_cert;	   /* metrics.tls: the endpoint over TLS; */
	char *metrics_tls_key;	   /* NULL: plain HTTP (restart) */
	/* cluster: (cluster/cluster.h); cluster_redis.len 0: no cluster */
	struct config_addr cluster_redis;
	char *cluster_username;	     /* ACL user; NULL: the default user */
	char *cluster_password_file; /* NULL: no AUTH */
	bool cluster_tls;	     /* TLS to Redis */
	char *cluster_tls_ca;	     /* NULL: the system's CAs */
	char *cluster_tls_name;	     /* the name in Redis's certificate */
	char cluster_prefix[64];     /* of every key; default "msaproxy:" */
	char cluster_node_id[64];    /* default the machine's name */
	uint64_t cluster_timeout_ms; /* a call's answer; default 500ms */
	bool cluster_fail_closed;    /* Redis down: 451 to MAIL */
	bool cluster_share_files;    /* blocklist files to every node */
	/* shutdown: */
	uint64_t shutdown_timeout_ms;	   /* SIGTERM, drain: default 30s */
	uint64_t shutdown_fast_timeout_ms; /* SIGINT: default 3s */

	/* backends: */
	struct config_backend *backends; /* at least one */
	size_t nbackends;
	uint64_t backend_connect_timeout_ms; /* default 10s */
	uint64_t backend_reply_timeout_ms;   /* default 5m */
	uint64_t backend_data_timeout_ms;    /* final DATA reply, 10m */
	enum balance_policy balance;	     /* default round-robin */
	uint64_t backend_down_time_ms;	     /* no checks: retry after, 30s */
	/* host names: looked up again this often (getaddrinfo gives no
	 * TTL); 0 = only at start and reload.  Default 60s. */
	uint64_t backend_resolve_interval_ms;
	uint64_t health_interval_ms; /* active checks; 0 = off (default) */
	uint64_t health_timeout_ms;  /* one whole check, default 5s */
	unsigned health_rise;	     /* good checks to come back, 2 */
	unsigned health_fall;	     /* failures in a row to go down, 3 */
};

/* The class called name, or NULL. */
const struct config_class *config_class_find(const struct config *cfg,
					     const char *name);
/* The class limits.users gives login, or NULL. */
const struct config_class *config_user_class(const struct config *cfg,
					     const char *login);

/* The line key (a dotted path) was written on, or 0 if it was not. */
int config_key_line(const struct config *cfg, const char *key);

/* "FILE:LINE: KEY: why" into err for a problem found after the load (a
 * file the configuration names, a path the start needs): LINE is key's,
 * else fallback's (a section: NULL for none), else 1 (a key left at its
 * default).  Always returns -1. */
int config_fail(const struct config *cfg, const char *key, const char *fallback,
		char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Load and validate path.  On error returns -1 with "path:line: key: why"
 * in err (NUL-terminated, cut to errlen). */
int config_load(const char *path, struct config **out, char *err,
		size_t errlen);
void config_free(struct config *cfg);

/* A duration in human units, "30s" "5m" "1h" "250ms" "2d" (the
 * control socket's ban TTLs): 0, or -1 with *ms untouched. */
int config_parse_duration(const char *s, uint64_t *ms);

/* Is any backend a host name (and so worth looking up again)? */
bool config_backends_named(const struct config *cfg);

enum config_resolve_result {
	CONFIG_RESOLVE_SAME,	/* every name gives the addresses cfg has */
	CONFIG_RESOLVE_CHANGED, /* one does not: msg names it */
	CONFIG_RESOLVE_FAILED,	/* one did not resolve: msg says why */
};
/* Look every backend host name of cfg up again (getaddrinfo: blocking,
 * main thread only) and compare with the addresses cfg holds.  msg gets
 * "HOST:PORT: ..." for the first name that changed or failed. */
enum config_resolve_result config_resolve_compare(const struct config *cfg,
						  char *msg, size_t msglen);

#endif
