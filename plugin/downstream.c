/*
 * downstream.c - the gateway the host's Discord channel connects to.
 *
 * Net thread only. Each bot has one downstream session: an id we make up,
 * a sequence counter, and the replay buffer of what was sent in it. The
 * host's WebSocket binds to that session with IDENTIFY or RESUME, and may
 * come and go as it likes: the upstream session is not touched by it.
 *
 * A downstream session begins when the upstream one does (READY). The
 * first host connection to bind gets everything from READY on; a host
 * that IDENTIFYs again later starts a fresh downstream session that opens
 * with a READY and the guilds built from what we kept. When the upstream
 * session is lost, the downstream one is invalidated (op 9) so the host
 * never silently misses events. This side is lenient: a host that is late
 * with its heartbeat keeps its connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DOWN_HEARTBEAT_MS 41250
/* Sends to one host connection per turn of the loop, at most: enough to
 * save loop turns, few enough that no bot waits long. */
#define WRITES_PER_TURN 16

static void close_down(hl_down *down, int code)
{
	down->close_code = code;
	lws_callback_on_writable(down->wsi);
}

/*
 * Frames for the host are queued and sent when the loop is about to wait
 * again (hl_down_flush): by then every frame this turn produced for a
 * connection is queued and they go out in one send, with no round of
 * asking for and getting a writable callback in between.
 */
void hl_down_send(hl_down *down, const char *payload, size_t len)
{
	hl_engine *eng = down->eng;

	if (down->close_code || hl_msgq_push(&down->tx, payload, len, 0) != 0)
		return;
	if (!down->unsent) {
		down->unsent = 1;
		down->next_unsent = eng->unsent;
		eng->unsent = down;
	}
}

static void send_text(hl_down *down, const char *text)
{
	hl_down_send(down, text, strlen(text));
}

static void unbind(hl_down *down)
{
	if (down->bot && down->bot->down == down)
		down->bot->down = NULL;
	down->bot = NULL;
	down->identified = 0;
}

/* Makes down the bot's host connection, closing any older one. */
static void bind_down(hl_bot *bot, hl_down *down)
{
	if (bot->down && bot->down != down) {
		hl_down *old = bot->down;

		unbind(old);
		close_down(old, 4000);
	}
	if (down->bot && down->bot != bot)
		unbind(down);
	down->bot = bot;
	down->identified = 1;
	bot->down = down;
}

/* ---- the session -------------------------------------------------------- */

void hl_down_session_new(hl_bot *bot)
{
	hl_random_hex(bot->ds_session, 16);
	bot->ds_seq = 0;
	bot->ds_host_seq = 0;
	bot->saved_ds_seq = -1; /* the host's session is saved again */
	bot->ds_bound = bot->down != NULL;
	hl_replay_clear(&bot->replay, 1);
}

void hl_down_invalidate(hl_bot *bot)
{
	hl_down *down = bot->down;

	hl_down_session_new(bot);
	bot->ds_bound = 0;
	if (down) {
		send_text(down, "{\"op\":9,\"d\":false}");
		unbind(down);
	}
}

void hl_down_fatal(hl_bot *bot, int code)
{
	hl_down *down = bot->down;

	if (down) {
		unbind(down);
		close_down(down, code);
	}
}

/* READY as the host must see it: our session id, our origin to resume. */
static void rewrite_ready(hl_bot *bot, cJSON *d)
{
	cJSON_DeleteItemFromObjectCaseSensitive(d, "session_id");
	cJSON_AddStringToObject(d, "session_id", bot->ds_session);
	cJSON_DeleteItemFromObjectCaseSensitive(d, "resume_gateway_url");
	cJSON_AddStringToObject(d, "resume_gateway_url", bot->eng->ws_origin);
}

/*
 * Numbers the dispatch for the host's session, sends it if the host is
 * there and keeps it for replay. The payload is spliced in as it came.
 */
void hl_down_dispatch_raw(hl_bot *bot, const char *t, size_t tlen,
                          const char *d, size_t dlen)
{
	static const char head[] = "{\"op\":0,\"t\":\"";
	char seq[48], *frame, *p;
	size_t seqlen, len;

	seqlen = (size_t)snprintf(seq, sizeof(seq), "\",\"s\":%lld,\"d\":",
	                          (long long)(bot->ds_seq + 1));
	len = sizeof(head) - 1 + tlen + seqlen + dlen + 1;
	frame = malloc(len + 1);
	if (frame == NULL)
		return;
	p = frame;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	memcpy(p, t, tlen);
	p += tlen;
	memcpy(p, seq, seqlen);
	p += seqlen;
	memcpy(p, d, dlen);
	p += dlen;
	*p++ = '}';
	*p = '\0';

	bot->ds_seq++;
	if (bot->down && bot->down->identified) {
		hl_down_send(bot->down, frame, len);
		bot->ds_bound = 1;
	}
	hl_replay_push(&bot->replay, frame, len);
}

void hl_down_dispatch(hl_bot *bot, const char *t, cJSON *d)
{
	char *dtext;

	if (strcmp(t, "READY") == 0)
		rewrite_ready(bot, d);
	dtext = cJSON_PrintUnformatted(d);
	if (dtext == NULL)
		return;
	hl_down_dispatch_raw(bot, t, strlen(t), dtext, strlen(dtext));
	free(dtext);
}

/* Sends everything after seq in the current session. */
static void replay_after(hl_bot *bot, hl_down *down, int64_t seq)
{
	int64_t s;

	for (s = seq + 1; s <= bot->ds_seq; s++) {
		size_t len;
		const char *p = hl_replay_at(&bot->replay, s, &len);

		if (p)
			hl_down_send(down, p, len);
	}
}

/*
 * The dispatches of the current session that the host may not have
 * seen: those after the last sequence its heartbeats confirmed, less
 * READY and the guilds, which a new session rebuilds. A host that
 * IDENTIFYs again (an account restart) would otherwise lose what came
 * while it was away; what it did see comes twice, which clients that
 * know their message ids ignore.
 */
static cJSON *unseen_dispatches(hl_bot *bot)
{
	/* Interactions are not sent twice: their token is good for three
	 * seconds, and a host that acted on one would act again. */
	static const char *const rebuilt[] = { "READY", "GUILD_CREATE",
		                               "GUILD_DELETE",
		                               "INTERACTION_CREATE" };
	cJSON *list = cJSON_CreateArray();
	int64_t s;

	for (s = bot->ds_host_seq + 1; list && s <= bot->ds_seq; s++) {
		size_t len, i;
		const char *p = hl_replay_at(&bot->replay, s, &len);
		cJSON *msg = p ? cJSON_ParseWithLength(p, len) : NULL;
		cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "t");
		int keep = cJSON_IsString(t);

		for (i = 0; keep && i < sizeof(rebuilt) / sizeof(*rebuilt); i++)
			keep = strcmp(t->valuestring, rebuilt[i]) != 0;
		if (keep)
			cJSON_AddItemToArray(list, msg);
		else
			cJSON_Delete(msg);
	}
	return list;
}

/*
 * A fresh session for a host that joins a running upstream session, or
 * one restored from a checkpoint: READY, the guilds we kept, then what
 * the host may have missed of the session before.
 */
void hl_down_session_start(hl_bot *bot)
{
	cJSON *ready = cJSON_Parse(bot->ready_d), *g, *missed, *msg;

	missed = unseen_dispatches(bot);
	hl_down_session_new(bot);
	if (ready == NULL) {
		cJSON_Delete(missed);
		return;
	}
	hl_down_dispatch(bot, "READY", ready);
	cJSON_Delete(ready);
	cJSON_ArrayForEach (g, bot->guilds) {
		hl_down_dispatch(bot, "GUILD_CREATE", g);
	}
	cJSON_ArrayForEach (msg, missed) {
		hl_down_dispatch(
		        bot,
		        cJSON_GetObjectItemCaseSensitive(msg, "t")->valuestring,
		        cJSON_GetObjectItemCaseSensitive(msg, "d"));
	}
	if (cJSON_GetArraySize(missed) > 0)
		hl_logf(bot->eng->log, HL_INFO,
		        "downstream session restarted bot=%s resent=%d",
		        bot->token_hash, cJSON_GetArraySize(missed));
	cJSON_Delete(missed);
}

/* ---- ops from the host ------------------------------------------------ */

static const char *bare_token(const char *token)
{
	return strncmp(token, "Bot ", 4) == 0 ? token + 4 : token;
}

static int parse_shard(cJSON *d, int shard[2])
{
	cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "shard");

	shard[0] = 0;
	shard[1] = 1;
	if (s == NULL)
		return 0;
	if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) != 2)
		return -1;
	shard[0] = cJSON_GetArrayItem(s, 0)->valueint;
	shard[1] = cJSON_GetArrayItem(s, 1)->valueint;
	return shard[1] >= 1 && shard[0] >= 0 && shard[0] < shard[1] ? 0 : -1;
}

static void on_identify(hl_down *down, cJSON *d)
{
	hl_engine *eng = down->eng;
	cJSON *token = cJSON_GetObjectItemCaseSensitive(d, "token");
	int shard[2];
	hl_bot *bot;

	if (!cJSON_IsString(token) || parse_shard(d, shard) != 0) {
		hl_logf(eng->log, HL_WARN, "downstream identify malformed");
		close_down(down, 4002);
		return;
	}
	bot = hl_bot_find(eng, bare_token(token->valuestring), shard);
	if (bot == NULL) {
		cJSON *identify = cJSON_Duplicate(d, 1);

		cJSON_DeleteItemFromObjectCaseSensitive(identify, "compress");
		bot = hl_bot_new(eng, bare_token(token->valuestring), shard,
		                 identify);
		if (bot == NULL) {
			cJSON_Delete(identify);
			close_down(down, 4000);
			return;
		}
		hl_logf(eng->log, HL_INFO, "new bot bot=%s shard=%d/%d",
		        bot->token_hash, shard[0], shard[1]);
		hl_session_restore(bot);
		hl_up_start(bot);
	}
	if (bot->up_state == UP_FATAL) {
		close_down(down, bot->fatal_code);
		return;
	}
	bind_down(bot, down);
	hl_reply_resend(eng, bot->token);
	hl_logf(eng->log, HL_INFO, "downstream identify bot=%s joined=%d",
	        bot->token_hash, bot->ready_d != NULL);
	if (bot->ready_d == NULL || bot->ds_seq == 0)
		return; /* READY goes out when the upstream session is up */
	if (bot->ds_bound || !hl_replay_covers(&bot->replay, 0))
		hl_down_session_start(bot);
	else
		replay_after(bot, down, 0);
	bot->ds_bound = 1;
}

static void on_resume(hl_down *down, cJSON *d)
{
	hl_engine *eng = down->eng;
	cJSON *token = cJSON_GetObjectItemCaseSensitive(d, "token");
	cJSON *sid = cJSON_GetObjectItemCaseSensitive(d, "session_id");
	cJSON *seq = cJSON_GetObjectItemCaseSensitive(d, "seq");
	int64_t after = cJSON_IsNumber(seq) ? (int64_t)seq->valuedouble : 0;
	const char *why = NULL;
	char resumed[96];
	hl_bot *bot;

	for (bot = eng->bots; bot; bot = bot->next) {
		if (cJSON_IsString(sid) &&
		    strcmp(bot->ds_session, sid->valuestring) == 0)
			break;
	}
	if (bot == NULL && cJSON_IsString(sid) && cJSON_IsString(token))
		bot = hl_session_resume_down(eng,
		                             bare_token(token->valuestring),
		                             sid->valuestring, after);
	if (bot == NULL)
		why = "unknown_session";
	else if (!cJSON_IsString(token) ||
	         strcmp(bare_token(token->valuestring), bot->token) != 0)
		why = "token_mismatch";
	else if (!hl_replay_covers(&bot->replay, after))
		why = "too_old";
	if (why) {
		hl_logf(eng->log, HL_WARN,
		        "downstream resume refused bot=%s reason=%s seq=%lld",
		        bot ? bot->token_hash : "-", why, (long long)after);
		send_text(down, "{\"op\":9,\"d\":false}");
		return;
	}
	bind_down(bot, down);
	if (after > bot->ds_host_seq)
		bot->ds_host_seq = after;
	replay_after(bot, down, after);
	snprintf(resumed, sizeof(resumed),
	         "{\"op\":0,\"t\":\"RESUMED\",\"s\":%lld,\"d\":{}}",
	         (long long)bot->ds_seq);
	send_text(down, resumed);
	bot->ds_bound = 1;
	hl_logf(eng->log, HL_INFO,
	        "downstream resumed bot=%s seq=%lld replayed=%lld",
	        bot->token_hash, (long long)after,
	        (long long)(bot->ds_seq - after));
}

static void on_message(hl_down *down, const char *text, size_t len)
{
	hl_engine *eng = down->eng;
	cJSON *msg = cJSON_ParseWithLength(text, len);
	cJSON *op = cJSON_GetObjectItemCaseSensitive(msg, "op");
	cJSON *d = cJSON_GetObjectItemCaseSensitive(msg, "d");

	if (!cJSON_IsNumber(op)) {
		hl_logf(eng->log, HL_WARN,
		        "downstream sent a malformed frame bytes=%zu", len);
		cJSON_Delete(msg);
		close_down(down, 4002);
		return;
	}
	switch (op->valueint) {
	case 1:
		if (down->bot && down->bot->down == down && cJSON_IsNumber(d) &&
		    (int64_t)d->valuedouble > down->bot->ds_host_seq &&
		    (int64_t)d->valuedouble <= down->bot->ds_seq)
			down->bot->ds_host_seq = (int64_t)d->valuedouble;
		send_text(down, "{\"op\":11}");
		break;
	case 2:
		on_identify(down, d);
		break;
	case 6:
		on_resume(down, d);
		break;
	default:
		/* Presence, voice state, member requests: Discord's business.
		 */
		if (down->bot == NULL)
			close_down(down, 4003);
		else if (hl_up_send(down->bot, text, len) != 0)
			hl_logf(eng->log, HL_WARN,
			        "downstream op dropped bot=%s op=%d: upstream "
			        "not ready",
			        down->bot->token_hash, op->valueint);
		break;
	}
	cJSON_Delete(msg);
}

/* ---- WebSocket callbacks --------------------------------------------- */

/*
 * Writes the header of an unmasked text frame of `len` bytes; joined
 * frames are shorter than HL_TX_JOIN_BYTES, so at most 16-bit lengths.
 */
static size_t put_frame_header(unsigned char *h, size_t len)
{
	h[0] = 0x81; /* FIN, text */
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	h[1] = 126;
	h[2] = (unsigned char)(len >> 8);
	h[3] = (unsigned char)len;
	return 4;
}

#define FRAME_HEADER_MAX 4
_Static_assert(HL_TX_JOIN_BYTES - FRAME_HEADER_MAX < 65536,
               "joined frames need at most a 16-bit length");

static int fits_joined(const hl_msg *m, size_t used)
{
	return used + FRAME_HEADER_MAX + m->len <= HL_TX_JOIN_BYTES;
}

/*
 * Sends the queued frames that fit into one buffer as ready WebSocket
 * frames with one write. In a burst a connection's frames come several
 * at a time, and a send each cost more than the frames themselves; what
 * the kernel does not take libwebsockets keeps and sends first next time.
 */
static int write_joined(hl_down *down)
{
	hl_engine *eng = down->eng;
	unsigned char *out;
	size_t used = 0;
	hl_msg *m;

	if (eng->tx_join == NULL) {
		eng->tx_join = malloc(LWS_PRE + HL_TX_JOIN_BYTES);
		if (eng->tx_join == NULL)
			return 1;
	}
	out = eng->tx_join + LWS_PRE;
	while ((m = down->tx.head) != NULL && fits_joined(m, used)) {
		used += put_frame_header(out + used, m->len);
		memcpy(out + used, m->data + LWS_PRE, m->len);
		used += m->len;
		free(hl_msgq_pop(&down->tx));
	}
	return lws_write(down->wsi, out, used, LWS_WRITE_RAW) < (int)used ? -1
	                                                                  : 0;
}

static int write_one(hl_down *down)
{
	hl_msg *m = hl_msgq_pop(&down->tx);
	int sent =
	        lws_write(down->wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
	int rc = sent < (int)m->len ? -1 : 0;

	free(m);
	return rc;
}

/*
 * Sends what is queued: several sends while the kernel takes them whole.
 * A short send leaves its rest buffered in libwebsockets, and then what
 * is still queued waits for a writable callback. Returns -1 when the
 * connection failed.
 */
static int send_queued(hl_down *down)
{
	const hl_msg *head;
	int n, rc;

	for (n = 0; n < WRITES_PER_TURN && down->tx.head; n++) {
		if (lws_partial_buffered(down->wsi))
			break;
		head = down->tx.head;
		rc = 1;
		if (head->next &&
		    fits_joined(head->next, FRAME_HEADER_MAX + head->len))
			rc = write_joined(down);
		if (rc > 0)
			rc = write_one(down);
		if (rc < 0)
			return -1;
	}
	if (down->tx.head || down->close_code)
		lws_callback_on_writable(down->wsi);
	return 0;
}

void hl_down_flush(hl_engine *eng)
{
	hl_down *down;

	while ((down = eng->unsent) != NULL) {
		eng->unsent = down->next_unsent;
		down->unsent = 0;
		if (send_queued(down) < 0)
			lws_set_timeout(down->wsi, PENDING_TIMEOUT_CLOSE_SEND,
			                LWS_TO_KILL_ASYNC);
	}
}

static int on_writable(hl_down *down)
{
	if (down->close_code && down->tx.head == NULL) {
		lws_close_reason(down->wsi,
		                 (enum lws_close_status)down->close_code, NULL,
		                 0);
		return -1;
	}
	return send_queued(down);
}

static void down_free(hl_engine *eng, hl_down *down)
{
	hl_down **p;

	unbind(down);
	for (p = &eng->downs; *p; p = &(*p)->next) {
		if (*p == down) {
			*p = down->next;
			break;
		}
	}
	for (p = &eng->unsent; down->unsent && *p; p = &(*p)->next_unsent) {
		if (*p == down) {
			*p = down->next_unsent;
			break;
		}
	}
	hl_buf_free(&down->rx);
	hl_msgq_clear(&down->tx);
	free(down);
}

int hl_down_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len)
{
	hl_engine *eng = hl_net_engine(wsi);
	hl_down **slot = user;
	hl_down *down = slot ? *slot : NULL;
	char hello[64];

	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		down = calloc(1, sizeof(*down));
		if (down == NULL)
			return -1;
		down->wsi = wsi;
		down->eng = eng;
		down->next = eng->downs;
		eng->downs = down;
		*slot = down;
		snprintf(hello, sizeof(hello),
		         "{\"op\":10,\"d\":{\"heartbeat_interval\":%d}}",
		         DOWN_HEARTBEAT_MS);
		send_text(down, hello);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (down == NULL || hl_buf_append(&down->rx, in, len) != 0)
			return -1;
		if (!lws_is_final_fragment(wsi))
			return 0;
		on_message(down, down->rx.data, down->rx.len);
		down->rx.len = 0;
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return down ? on_writable(down) : -1;
	case LWS_CALLBACK_CLOSED:
		if (down)
			down_free(eng, down);
		*slot = NULL;
		return 0;
	default:
		return 0;
	}
}
