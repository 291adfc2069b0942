/*
 * internal.h - types and calls shared by the engine's source files.
 *
 * An engine owns three kinds of state:
 *   - the net thread's world (bots, upstream and downstream connections,
 *     timers), touched only by the net thread;
 *   - mailboxes between threads (net -> rest and net -> disk jobs, rest
 *     and disk -> net results), each a locked list the other side drains;
 *   - the status snapshot and the log buffer, each under its own lock, held
 *     only for a copy, so host calls return at once.
 */
#ifndef HL_INTERNAL_H
#define HL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <ev.h>
#include <libwebsockets.h>

#include "heartline.h"
#include "journal.h"

#define HL_VERSION "0.1.0"
#define HL_API_PREFIX "/api/v10"
#define HL_CDN_PREFIX "/api/v10/_heartline/cdn/"
#define HL_MEDIA_PREFIX "/api/v10/_heartline/media/"
#define HL_STATUS_PATH "/_heartline/status" /* GET: the status snapshot */

/* ---- small utilities (util.c) ------------------------------------- */

int64_t hl_now_ms(void);  /* wall clock, ms since the epoch */
int64_t hl_mono_ms(void); /* monotonic clock, ms */
double hl_random(void);   /* uniform in [0, 1) */
void hl_token_hash(const char *token, char out[9]);
void hl_token_key(const char *token, char out[65]);
void hl_random_hex(char *out, size_t nbytes);

/* A growable byte buffer. */
typedef struct hl_buf {
	char *data;
	size_t len;
	size_t cap;
} hl_buf;

int hl_buf_append(hl_buf *b, const void *p, size_t n);
int hl_buf_appendf(hl_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void hl_buf_free(hl_buf *b);

/* ---- logging (log.c) ---------------------------------------------- */

enum hl_level { HL_DEBUG, HL_INFO, HL_WARN, HL_ERROR };

typedef struct hl_log hl_log;

hl_log *hl_log_new(enum hl_level min);
void hl_log_free(hl_log *log);
void hl_logf(hl_log *log, enum hl_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
size_t hl_log_drain(hl_log *log, char *buf, size_t buflen);
void hl_log_put_record(hl_log *log, const char *line, size_t len);
void hl_log_set_level(hl_log *log, enum hl_level min);
int hl_level_parse(const char *name, enum hl_level *out);

/* ---- configuration (config.c) ------------------------------------- */

typedef struct hl_config {
	int listen_port;
	char *api_base;    /* upstream REST base, ends in /api/v10 */
	char *gateway_url; /* upstream gateway override, or NULL */
	char *cdn_base;    /* upstream for cdn.discordapp.com */
	char *media_base;  /* upstream for media.discordapp.net */
	char *ca_file;     /* extra CA bundle for TLS, or NULL */
	char *tls_groups;  /* TLS key exchange groups, or NULL */
	char *state_dir;   /* the reply journal's directory, or NULL */
	int replay_buffer; /* dispatches kept per bot for RESUME */
	enum hl_level log_level;
	int identify_interval_ms;
	int typing_interval_ms; /* upstream refresh period */
	int typing_hold_ms;     /* stop when the host has not asked for this */
	int typing_cap_ms;      /* stop after this long in any case */
	int identify_reserve;   /* IDENTIFYs per day kept back, never used */
	int jitter_min_ms;      /* reconnect window when many drop at once */
	int jitter_max_ms;
} hl_config;

int hl_config_parse(const char *json, hl_config *cfg, char *err, size_t errlen);
void hl_config_free(hl_config *cfg);
const char *hl_config_fixed_change(const hl_config *a, const hl_config *b);
void hl_config_apply_live(hl_config *dst, const hl_config *src);

/* ---- URLs (url.c) ------------------------------------------------- */

typedef struct hl_url {
	int tls;
	char host[256];
	int port;
	char path[1024]; /* path and query, at least "/" */
} hl_url;

int hl_url_parse(const char *url, hl_url *out);

/* ---- replay buffer (replay.c) ------------------------------------- */

/* The dispatches of one downstream session, oldest first, bounded. */
typedef struct hl_replay {
	char **items; /* downstream payloads as sent, NUL-terminated */
	size_t *lens;
	int cap;   /* the most it keeps */
	int slots; /* allocated so far; grows to cap as it fills */
	int count;
	int head;          /* index of the oldest item */
	int64_t first_seq; /* sequence number of the oldest item */
} hl_replay;

int hl_replay_init(hl_replay *r, int cap);
void hl_replay_free(hl_replay *r);
void hl_replay_clear(hl_replay *r, int64_t next_seq);
void hl_replay_push(hl_replay *r, char *payload, size_t len); /* owns */
int hl_replay_covers(const hl_replay *r, int64_t after_seq);
const char *hl_replay_at(const hl_replay *r, int64_t seq, size_t *len);

/* ---- dispatch rewriting (rewrite.c) -------------------------------- */

int hl_rewrite_cdn(cJSON *node, const char *origin);

/* ---- jobs between threads (rest.c) --------------------------------- */

enum hl_job_kind {
	HL_JOB_FORWARD, /* a downstream HTTP request sent upstream */
	HL_JOB_GATEWAY, /* look up the gateway URL and resolve its host */
	HL_JOB_TYPING,  /* refresh a typing indicator */
	HL_JOB_JOURNAL, /* disk: make a reply durable, answered when synced */
	HL_JOB_JOURNAL_DONE, /* disk: Discord has the reply; no answer */
	HL_JOB_SESSION,      /* disk: write (or remove) a session checkpoint */
	HL_JOB_QUIT
};

typedef struct hl_job {
	struct hl_job *next;
	enum hl_job_kind kind;
	void *easy;  /* the curl handle while a transfer runs */
	uint64_t id; /* request id or bot id, for the answer */

	/* request */
	char *method;
	char *url;
	struct curl_slist *headers;
	hl_buf body;
	char *token;       /* HL_JOB_GATEWAY: bot token, freed after use */
	char *connect_url; /* HL_JOB_GATEWAY: URL to resolve, or NULL */
	int lookup;        /* HL_JOB_GATEWAY: call /gateway/bot first */

	/* answer */
	long status;
	hl_buf resp_headers; /* "Name: value\r\n" lines */
	hl_buf resp_body;
	char error[256];
	char address[64];  /* HL_JOB_GATEWAY: resolved address */
	char *gateway_url; /* HL_JOB_GATEWAY: URL from /gateway/bot */
	int max_concurrency;
	int has_starts; /* session_start_limit was read: */
	int starts_remaining;
	int starts_total;
	int64_t starts_reset_ms;

	/* HL_JOB_JOURNAL, HL_JOB_JOURNAL_DONE */
	hl_jentry *entry; /* the reply to make durable; its id once added */
	uint64_t jid;     /* the entry delivered */
	int jerr;         /* 0, or the negative errno of a failed write */

	/* HL_JOB_SESSION: the file under the state dir; body is its text,
	 * empty to remove it */
	char *file;
} hl_job;

void hl_job_free(hl_job *job);

typedef struct hl_mailbox {
	pthread_mutex_t lock;
	hl_job *head;
	hl_job *tail;
} hl_mailbox;

void hl_mailbox_init(hl_mailbox *mb);
void hl_mailbox_destroy(hl_mailbox *mb);
void hl_mailbox_put(hl_mailbox *mb, hl_job *job);
hl_job *hl_mailbox_take_all(hl_mailbox *mb);

typedef struct hl_rest hl_rest;
typedef struct hl_disk hl_disk;

hl_rest *hl_rest_start(struct hl_engine *eng, char *err, size_t errlen);
void hl_rest_submit(hl_rest *rest, hl_job *job);
void hl_rest_stop(hl_rest *rest);
struct curl_slist *hl_auth_headers(const char *token);

/* disk.c */
hl_disk *hl_disk_start(struct hl_engine *eng, char *err, size_t errlen);
void hl_disk_submit(hl_disk *disk, hl_job *job);
void hl_disk_stop(hl_disk *disk);

/* ---- bots and connections (net thread only) ------------------------ */

enum hl_up_state {
	UP_IDLE,       /* no connection, nothing scheduled */
	UP_WAITING,    /* a reconnect is scheduled */
	UP_PREPARING,  /* gateway lookup / DNS on the rest thread */
	UP_CONNECTING, /* TCP/TLS/WebSocket handshake */
	UP_HELLO,      /* connected, waiting for HELLO */
	UP_IDENTIFYING,
	UP_RESUMING,
	UP_READY,
	UP_BLOCKED, /* no IDENTIFY left today: waits for the reset */
	UP_FATAL
};

typedef struct hl_msg {
	struct hl_msg *next;
	size_t len;
	int urgent;           /* goes before everything queued, skips limits */
	unsigned char data[]; /* LWS_PRE bytes of headroom, then payload */
} hl_msg;

typedef struct hl_msgq {
	hl_msg *head;
	hl_msg *tail;
	int count;
} hl_msgq;

int hl_msgq_push(hl_msgq *q, const char *payload, size_t len, int front);
hl_msg *hl_msgq_pop(hl_msgq *q);
void hl_msgq_clear(hl_msgq *q);

/*
 * A one-shot timer of the net thread (net.c). libev keeps these in a
 * heap; the sorted list behind lws_sul_schedule costs a walk over every
 * pending timer for each one set, which with a thousand bots was the
 * largest part of the net thread's time once it no longer polled.
 */
typedef struct hl_timer {
	ev_timer w;
	struct ev_loop *loop; /* the loop of its first start, or NULL */
	void (*cb)(struct hl_timer *t);
} hl_timer;

struct hl_down;

typedef struct hl_bot {
	struct hl_bot *next;
	struct hl_engine *eng;
	uint64_t id;
	char *token;
	char token_hash[9];
	char user_id[32];
	int shard[2];
	cJSON *identify; /* the host's IDENTIFY d, reused upstream */

	/* upstream */
	enum hl_up_state up_state;
	struct lws *up_wsi;
	int up_fd;    /* its socket while established, else -1 */
	int tls_read; /* on eng->tls_readers */
	struct hl_bot *next_tls_read;
	hl_buf up_rx; /* a message being reassembled */
	hl_msgq up_tx;
	int up_close_code; /* close we are asking for, or 0 */
	char *gateway_url; /* from /gateway/bot or config */
	char *resume_url;  /* from READY */
	char session_id[128];
	int64_t up_seq;
	int heartbeat_ms;
	int hb_acked;
	int64_t hb_sent_ms;
	int64_t hb_due_ms; /* when the heartbeat timer was meant to fire */
	hl_timer hb_timer;
	hl_timer retry_timer;
	int attempts;         /* consecutive failed connects */
	int64_t reconnect_ms; /* chosen delay for the next connect, or -1 */
	int peer_close_code;  /* close code Discord sent, or 0 */
	int64_t last_identify_ms;
	int max_concurrency;
	int starts_remaining; /* IDENTIFYs left today, -1 until known */
	int starts_total;
	int64_t starts_reset_at; /* mono ms when the budget refills */
	int64_t ready_since_ms;
	int64_t sends[120]; /* send times in the current window */
	int nsends;
	int fatal_code;
	int identify_pending; /* waiting for an IDENTIFY slot */

	/* checkpoint (session.c) */
	int restoring;        /* RESUMEing a session of an earlier run */
	cJSON *held;          /* dispatches that came before its RESUMED */
	int64_t saved_seq;    /* sequence in the last checkpoint */
	int64_t saved_ds_seq; /* and the host's, or -1 to save it again */
	int64_t saved_at_ms;  /* mono ms of the last checkpoint */
	char snapshot_id[17]; /* of the last whole one on disk, or "" */
	int snapshot_now;     /* a new session or guild: saved whole next */
	cJSON *guild_events;  /* folded since the snapshot: go in marks */
	size_t guild_events_bytes;

	/* downstream session, the host's view of this bot */
	char ds_session[33];
	int64_t ds_seq;
	int64_t ds_host_seq; /* the last seq the host's heartbeats confirmed */
	int ds_bound;        /* a host connection has seen this session */
	hl_replay replay;
	char *ready_d;        /* last upstream READY d, unmodified */
	cJSON *guilds;        /* object: guild id -> last GUILD_CREATE d */
	struct hl_down *down; /* current host connection, or NULL */

	/* figures */
	int64_t hb_rtt_ms;
	int64_t hb_late_max_ms;
	int drops;
	int identifies;
	int resumes;
	int64_t dispatches;
	int typing;
	int replies;
} hl_bot;

/* One downstream WebSocket (a host gateway connection). */
typedef struct hl_typing hl_typing;
typedef struct hl_limiter hl_limiter;

#define HL_INVALID_SLOTS 600 /* seconds in Discord's invalid-request window */

/* Queued frames of one host connection are joined into one send of at
 * most this many bytes. */
#define HL_TX_JOIN_BYTES 65536

typedef struct hl_down {
	struct hl_down *next;
	struct hl_down *next_unsent; /* on eng->unsent while queued there */
	int unsent;
	struct hl_engine *eng;
	struct lws *wsi;
	hl_bot *bot;
	hl_buf rx;
	hl_msgq tx;
	int close_code;
	int identified;
} hl_down;

/* One downstream HTTP request. */
typedef struct hl_http {
	struct hl_http *next;
	struct lws *wsi;
	struct hl_engine *eng;
	uint64_t id;
	char method[8];
	char *path; /* path and query */
	struct curl_slist *headers;
	hl_buf body;
	hl_job *answer; /* set when the rest thread has answered */
	hl_buf out;     /* local answer body */
	int out_status;
	size_t sent;
	int headers_sent;
	hl_bot *bot;         /* by the Authorization header, if known */
	hl_limiter *limiter; /* the token's REST limits, or NULL */
	char route[192];     /* rate-limit route key */
	char major[32];      /* its major parameter */
	hl_job *parked;      /* waiting for a limit to pass */
	int counted;         /* in its bucket's in-flight count */
	hl_timer wait;
	int retries;
	hl_job *held;     /* a reply waiting for the journal's sync */
	uint64_t jid;     /* its journal entry, once durable, else 0 */
	int attempts;     /* deliveries of a journaled reply that failed */
	long last_status; /* Discord's answer to the last of them */
} hl_http;

/* handover.h */
typedef struct hl_owner hl_owner;

struct hl_engine {
	hl_config cfg;
	char *cfg_text; /* the configuration as hl_start was given it */
	hl_log *log;
	hl_owner *owner; /* the network context's user data */
	struct lws_context *lws;
	struct ev_loop *loop; /* the net thread's, under lws */
	struct lws_vhost *down_vh;
	struct lws_vhost *up_vh;
	struct ssl_ctx_st *tls; /* client TLS context for Discord */
	int port;               /* the host's port (front.c) */
	int inner_port;         /* libwebsockets' HTTP port behind it */
	struct hl_front *front;
	pthread_mutex_t adopt_lock; /* sockets handed to the net thread */
	int adopt_fds[64];
	int nadopt;
	char origin[64];    /* http://127.0.0.1:PORT */
	char ws_origin[64]; /* ws://127.0.0.1:PORT */
	int64_t started_ms;

	pthread_t net_thread;
	_Atomic int stopping;
	int net_done;
	hl_handover *taken; /* from the engine before, until the net thread
	                       has taken it */
	hl_handover *given; /* to the engine after (hl_detach) */

	hl_rest *rest;
	hl_disk *disk;      /* NULL when no state_dir is configured */
	hl_mailbox results; /* rest, disk -> net */
	hl_jscan recovered; /* journal entries from an earlier run, unsent */
	struct hl_edit_mark *edits; /* edits given up on, and recent ones */
	cJSON *saved; /* session checkpoints not yet claimed by a bot */

	/* a configuration handed in by hl_reconfigure, for the net thread */
	pthread_mutex_t reconf_lock;
	hl_config *reconf;

	/* net thread world */
	hl_bot *bots;
	hl_down *downs;
	hl_down *unsent;   /* host connections with frames to send */
	hl_bot **up_by_fd; /* established upstream connections by socket */
	int up_by_fd_len;
	hl_bot *tls_readers; /* bots whose TLS read a record this turn */
	ev_prepare flush;    /* before the loop waits: reads, then sends */
	/* LWS_PRE + HL_TX_JOIN_BYTES, made when first used */
	unsigned char *tx_join;
	hl_http *https;
	hl_typing *typings;
	hl_limiter *limiters;
	int64_t invalid_sec[HL_INVALID_SLOTS]; /* per-second counts, a ring */
	int invalid_cnt[HL_INVALID_SLOTS];
	int64_t invalid_warned_ms;
	uint64_t next_id;
	int64_t drops[16]; /* recent upstream drops, mono ms, a ring */
	int ndrops;

	/* status snapshot, rebuilt by the net thread when asked for */
	pthread_mutex_t status_lock;
	pthread_cond_t status_built; /* signalled with each new snapshot */
	uint64_t status_gen;         /* snapshots built so far */
	int64_t status_built_ms;     /* mono ms of the last one */
	_Atomic int status_wanted;   /* the host waits for a fresh one */
	char *status_json;
	int64_t rest_requests;
	int rest_in_flight;
	int64_t rest_errors;
};

typedef struct hl_engine hl_engine;

/* front.c */
typedef struct hl_front hl_front;
hl_front *hl_front_bind(hl_engine *eng, int port, char *err, size_t errlen);
hl_front *hl_front_adopt(hl_engine *eng, int fd, char *err, size_t errlen);
int hl_front_release(hl_front *f);
int hl_front_run(hl_front *f);
void hl_front_stop(hl_front *f);

/* frame.c: where the top-level fields of a gateway frame are */
#define HL_FRAME_NONE (-1) /* absent, or for "s" null */
#define HL_FRAME_ODD (-2)  /* present, but not a small integer */

typedef struct hl_frame {
	int op;        /* or HL_FRAME_NONE / HL_FRAME_ODD */
	const char *t; /* the event name inside its quotes, or NULL */
	size_t tlen;
	int odd;       /* a top-level key has escapes, or "t" is neither
	                  null nor a string without them */
	int64_t s;     /* or HL_FRAME_NONE / HL_FRAME_ODD */
	const char *d; /* the bytes of the value of "d", or NULL */
	size_t dlen;
	unsigned seen;
} hl_frame;

/* 0 when text is one well-formed JSON object, else -1. */
int hl_frame_scan(const char *text, size_t len, hl_frame *f);

/* net.c */
extern const lws_retry_bo_t hl_net_no_idle_check;
void hl_timer_start(hl_engine *eng, hl_timer *t, int64_t ms,
                    void (*cb)(hl_timer *t));
void hl_timer_stop(hl_timer *t);
int64_t hl_timer_left(hl_timer *t);
void hl_net_adopt(hl_engine *eng, int fd);
int hl_net_start(hl_engine *eng, char *err, size_t errlen);
void hl_net_stop(hl_engine *eng);
void hl_net_destroy(hl_engine *eng);
void hl_net_wake(hl_engine *eng);
void hl_net_track_up(hl_bot *bot, struct lws *wsi);
void hl_net_untrack_up(hl_bot *bot);
hl_engine *hl_net_engine(struct lws *wsi);
void hl_net_borrow(hl_engine *eng);
void hl_net_discard(hl_handover *ho);
void hl_net_unborrow(hl_engine *eng);
int hl_net_attach(hl_engine *eng, char *err, size_t errlen);

/* upstream.c */
hl_bot *hl_bot_find(hl_engine *eng, const char *token, const int shard[2]);
hl_bot *hl_bot_new(hl_engine *eng, const char *token, const int shard[2],
                   cJSON *identify);
void hl_bot_free(hl_bot *bot);
void hl_up_start(hl_bot *bot);
void hl_up_on_gateway(hl_bot *bot, hl_job *job);
int hl_up_callback(struct lws *wsi, enum lws_callback_reasons reason, void *in,
                   size_t len);
void hl_up_shutdown(hl_bot *bot);
struct lws *hl_up_release(hl_bot *bot, int keep);
void hl_up_start_after(hl_bot *bot, int64_t ms);
void hl_up_adopt(hl_bot *bot, struct lws *wsi);
const char *hl_up_state_name(const hl_bot *bot);
int hl_up_send(hl_bot *bot, const char *payload, size_t len);

/* downstream.c */
int hl_down_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len);
void hl_down_dispatch(hl_bot *bot, const char *t, cJSON *d);
void hl_down_dispatch_raw(hl_bot *bot, const char *t, size_t tlen,
                          const char *d, size_t dlen);
void hl_down_session_new(hl_bot *bot);
void hl_down_session_start(hl_bot *bot);
void hl_down_invalidate(hl_bot *bot);
void hl_down_fatal(hl_bot *bot, int code);
void hl_down_send(hl_down *down, const char *payload, size_t len);
void hl_down_flush(hl_engine *eng);

/* http.c */
int hl_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len);
void hl_http_on_answer(hl_engine *eng, hl_job *job);
void hl_http_forget(hl_engine *eng, hl_http *h);
void hl_http_fail(hl_engine *eng, hl_http *h, int status, const char *message);

/* session.c */
void hl_sessions_load(hl_engine *eng);
int hl_session_restore(hl_bot *bot);
hl_bot *hl_session_resume_down(hl_engine *eng, const char *token,
                               const char *sid, int64_t seq);
void hl_session_hold(hl_bot *bot, cJSON *msg);
cJSON *hl_session_confirmed(hl_bot *bot);
void hl_session_abandon(hl_bot *bot);
void hl_session_checkpoint(hl_engine *eng, int final);
void hl_session_forget(hl_bot *bot);
void hl_session_guild_changed(hl_bot *bot, const char *t, cJSON *d);
void hl_session_file(const char *token, const int shard[2], const char *ext,
                     char *out, size_t outlen);
char *hl_session_snapshot(hl_bot *bot, size_t tail_max);
hl_bot *hl_session_adopt(hl_engine *eng, const char *token, const int shard[2],
                         cJSON *identify, const char *checkpoint, int live);
int hl_session_write(int dirfd, const hl_job *job);

/* reply.c */
int hl_reply_hold(hl_engine *eng, hl_http *h, hl_job *job);
void hl_reply_on_journaled(hl_engine *eng, hl_job *done);
int hl_reply_settle(hl_engine *eng, hl_http *h, hl_job *job);
int hl_reply_drop_stale(hl_engine *eng, hl_http *h);
void hl_reply_resend(hl_engine *eng, const char *token);
void hl_reply_free_edits(hl_engine *eng);

/* ratelimit.c */
hl_limiter *hl_limiter_for(hl_engine *eng, const char *token);
void hl_limiters_free(hl_engine *eng);
void hl_route_of(const char *method, const char *path, char *key, size_t keylen,
                 char *major, size_t majorlen);
void hl_limit_submit(hl_engine *eng, hl_http *h, hl_job *job);
int hl_limit_on_answer(hl_engine *eng, hl_http *h, hl_job *job);
void hl_limit_cancel(hl_http *h);
void hl_limit_retry(hl_engine *eng, hl_http *h, hl_job *job, int64_t ms);
const char *hl_limiter_token(const hl_limiter *l);
void hl_limit_status(hl_engine *eng, const char *token, cJSON *o);
int hl_invalid_recent(hl_engine *eng);

/* coord.c */
int64_t hl_coord_identify_wait(hl_bot *bot);
void hl_coord_identified(hl_bot *bot);
void hl_coord_budget(hl_bot *bot, const hl_job *job);
int64_t hl_coord_budget_wait(hl_bot *bot);
int64_t hl_coord_reconnect_delay(hl_bot *bot, int64_t wanted_ms);

/* typing.c */
void hl_typing_ask(hl_bot *bot, const char *channel);
void hl_typing_stop(hl_bot *bot, const char *channel, const char *why);
void hl_typing_on_answer(hl_engine *eng, hl_job *job);
void hl_typing_free_all(hl_engine *eng);

/* handover.c */
struct hl_handover_bot;
void hl_handover_pack(hl_bot *bot, struct hl_handover_bot *hb);
int hl_handover_unpack(hl_engine *eng, struct hl_handover_bot *hb);
void hl_handover_save(hl_handover *ho);
void hl_handover_free(hl_handover *ho);

/* guilds.c */
int hl_guild_folds(const char *t, size_t tlen);
int hl_guild_event(cJSON *guilds, const char *t, cJSON *d);

/* status.c */
void hl_status_refresh(hl_engine *eng);

#endif /* HL_INTERNAL_H */
