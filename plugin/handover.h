/*
 * handover.h - what an engine that stops hands to the next engine in the
 * same process, so that its upstream sessions go on without a reconnect.
 *
 * Two builds of the library loaded side by side share one libwebsockets,
 * one libev and one OpenSSL, so the live network context moves as it is:
 * the next engine takes the context, its loop, both vhosts and the TLS
 * context, points the vhosts' protocol callbacks at its own code and each
 * upstream connection at a bot of its own. The rest travels as data: per
 * bot its token, its IDENTIFY, its session checkpoint (the text that
 * session.c writes to disk, with the dispatches the host has not
 * confirmed) and the heartbeat and queue state of the live connection.
 *
 * Both builds read these structs, so their layout is a contract between
 * builds: a change to them, to hl_owner, to the checkpoint format, to
 * hl_buf or to hl_msg (queued frames move as they are) bumps
 * HL_HANDOVER_VERSION, and hl_attach refuses a handover of another
 * version. What libwebsockets copied from the first build's tables when
 * it made the vhosts (protocol names, per-connection storage and buffer
 * sizes) stays as that build set it, for as long as the context lives.
 */
#ifndef HL_HANDOVER_H
#define HL_HANDOVER_H

#include "internal.h"

#define HL_HANDOVER_VERSION 1

/* The network context's user data: the engine that serves it now. */
struct hl_owner {
	struct hl_engine *eng;
};

typedef struct hl_handover_bot {
	char *token;
	int shard[2];
	char *identify;      /* the host's IDENTIFY d, token included */
	char *checkpoint;    /* the session's final checkpoint, or NULL */
	char *gateway_url;   /* from /gateway/bot, or NULL */
	int fatal_code;      /* Discord ended the bot for good with it, or 0 */
	int64_t retry_in_ms; /* a bot in backoff connects again then */

	/* The upstream connection with a READY session, or NULL when the
	 * next engine must connect again (RESUMEing when it can). */
	struct lws *wsi;
	int heartbeat_ms;
	int hb_acked;
	int64_t hb_sent_ms;
	int64_t hb_due_ms; /* when the next heartbeat is due, mono ms */
	int64_t ready_since_ms;
	hl_buf up_rx;  /* a message half received */
	hl_msgq up_tx; /* frames queued for Discord */
	int64_t sends[120];
	int nsends;

	/* the coordinator's and the figures' view of the bot */
	int64_t last_identify_ms;
	int max_concurrency;
	int starts_remaining;
	int starts_total;
	int64_t starts_reset_at;
	int attempts;
	int64_t hb_rtt_ms;
	int64_t hb_late_max_ms;
	int drops;
	int identifies;
	int resumes;
	int64_t dispatches;
	int replies;
} hl_handover_bot;

struct hl_handover {
	int version;     /* HL_HANDOVER_VERSION of the build that made it */
	size_t size;     /* and its sizeof(struct hl_handover) */
	size_t bot_size; /* and its sizeof(hl_handover_bot) */
	char *config;    /* the configuration the engine started with */
	char *logs;      /* records logged while handing over, JSON lines */

	struct lws_context *lws;
	struct ev_loop *loop;
	struct lws_vhost *down_vh;
	struct lws_vhost *up_vh;
	struct ssl_ctx_st *tls;
	hl_owner *owner;
	int inner_port;
	int listen_fd; /* the host's port, still listening */
	int port;

	int nbots;
	hl_handover_bot *bots;
};

#endif /* HL_HANDOVER_H */
