/*
 * upstream.c - one Discord gateway session per bot and shard, by the book.
 *
 * Net thread only. A bot's upstream life:
 *
 *   IDLE/WAITING -> PREPARING (gateway URL and DNS on the rest thread)
 *   -> CONNECTING -> HELLO -> IDENTIFYING or RESUMING -> READY
 *
 * and back to WAITING whenever the connection ends, unless Discord closed
 * it with a fatal code (FATAL: nothing retries). Heartbeats run on the
 * bot's own timer: the first after interval * random[0,1), then every
 * interval; a heartbeat that finds the previous one unacknowledged means
 * a zombie connection, which is closed with a non-1000 code and resumed.
 * The host's view of the session lives in downstream.c; this file only
 * tells it about new sessions, lost sessions and dispatches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "internal.h"

/* Our close code when we end a connection but keep the session. */
#define CLOSE_RESUMABLE 4900

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS 60000
#define STABLE_MS 60000
#define SEND_WINDOW_MS 60000
#define SEND_BUDGET 115 /* of Discord's 120, room kept for heartbeats */

static const int fatal_codes[] = { 4004, 4010, 4011, 4012, 4013, 4014 };

static int is_fatal(int code)
{
	size_t i;

	for (i = 0; i < sizeof(fatal_codes) / sizeof(fatal_codes[0]); i++) {
		if (fatal_codes[i] == code)
			return 1;
	}
	return 0;
}

static const char *state_name(enum hl_up_state s)
{
	/* Indexed by enum hl_up_state; the names hosts see in status. */
	static const char *const names[] = {
		[UP_IDLE] = "idle",
		[UP_WAITING] = "backoff",
		[UP_PREPARING] = "connecting",
		[UP_CONNECTING] = "connecting",
		[UP_HELLO] = "connecting",
		[UP_IDENTIFYING] = "identifying",
		[UP_RESUMING] = "resuming",
		[UP_READY] = "ready",
		[UP_BLOCKED] = "blocked",
		[UP_FATAL] = "fatal",
	};

	return names[s];
}

/* ---- bots ----------------------------------------------------------- */

hl_bot *hl_bot_find(hl_engine *eng, const char *token, const int shard[2])
{
	hl_bot *bot;

	for (bot = eng->bots; bot; bot = bot->next) {
		if (bot->shard[0] == shard[0] && bot->shard[1] == shard[1] &&
		    strcmp(bot->token, token) == 0)
			return bot;
	}
	return NULL;
}

hl_bot *hl_bot_new(hl_engine *eng, const char *token, const int shard[2],
                   cJSON *identify)
{
	hl_bot *bot = calloc(1, sizeof(*bot));

	if (bot == NULL)
		return NULL;
	bot->token = strdup(token);
	bot->guilds = cJSON_CreateObject();
	if (bot->token == NULL || bot->guilds == NULL ||
	    hl_replay_init(&bot->replay, eng->cfg.replay_buffer) != 0) {
		hl_bot_free(bot);
		return NULL;
	}
	bot->eng = eng;
	bot->up_fd = -1;
	bot->id = ++eng->next_id;
	bot->shard[0] = shard[0];
	bot->shard[1] = shard[1];
	bot->identify = identify;
	bot->reconnect_ms = -1;
	bot->starts_remaining = -1;
	hl_token_hash(token, bot->token_hash);
	bot->next = eng->bots;
	eng->bots = bot;
	return bot;
}

void hl_bot_free(hl_bot *bot)
{
	if (bot == NULL)
		return;
	hl_timer_stop(&bot->hb_timer);
	hl_timer_stop(&bot->retry_timer);
	if (bot->up_wsi)
		lws_set_wsi_user(bot->up_wsi, NULL);
	if (bot->token) {
		memset(bot->token, 0, strlen(bot->token));
		free(bot->token);
	}
	cJSON_Delete(bot->identify);
	hl_buf_free(&bot->up_rx);
	hl_msgq_clear(&bot->up_tx);
	free(bot->gateway_url);
	free(bot->resume_url);
	hl_replay_free(&bot->replay);
	free(bot->ready_d);
	cJSON_Delete(bot->guilds);
	cJSON_Delete(bot->held);
	cJSON_Delete(bot->guild_events);
	free(bot);
}

/* ---- sending ---------------------------------------------------------- */

static int budget_left(hl_bot *bot, int64_t now)
{
	int i, n = 0;

	for (i = 0; i < bot->nsends; i++) {
		if (now - bot->sends[i] < SEND_WINDOW_MS)
			bot->sends[n++] = bot->sends[i];
	}
	bot->nsends = n;
	return SEND_BUDGET - n;
}

/* Queues a payload for Discord; heartbeats jump the queue. */
static int queue_up(hl_bot *bot, const char *payload, size_t len, int urgent)
{
	if (bot->up_wsi == NULL)
		return -1;
	if (hl_msgq_push(&bot->up_tx, payload, len, urgent) != 0)
		return -1;
	lws_callback_on_writable(bot->up_wsi);
	return 0;
}

int hl_up_send(hl_bot *bot, const char *payload, size_t len)
{
	if (bot->up_state != UP_READY)
		return -1;
	return queue_up(bot, payload, len, 0);
}

static void send_heartbeat(hl_bot *bot)
{
	char payload[48];
	int n;

	if (bot->up_seq > 0)
		n = snprintf(payload, sizeof(payload), "{\"op\":1,\"d\":%lld}",
		             (long long)bot->up_seq);
	else
		n = snprintf(payload, sizeof(payload), "{\"op\":1,\"d\":null}");
	bot->hb_acked = 0;
	bot->hb_sent_ms = hl_mono_ms();
	queue_up(bot, payload, (size_t)n, 1);
}

static void resend_later(hl_timer *timer)
{
	hl_bot *bot = lws_container_of(timer, hl_bot, retry_timer);

	if (bot->up_wsi)
		lws_callback_on_writable(bot->up_wsi);
}

static int on_writable(hl_bot *bot)
{
	int64_t now = hl_mono_ms();
	hl_msg *msg;

	if (bot->up_close_code) {
		lws_close_reason(bot->up_wsi,
		                 (enum lws_close_status)bot->up_close_code,
		                 NULL, 0);
		return -1;
	}
	msg = bot->up_tx.head;
	if (msg == NULL)
		return 0;
	if (!msg->urgent && budget_left(bot, now) <= 0) {
		/* Wait for the oldest send to leave the window. */
		hl_timer_start(bot->eng, &bot->retry_timer,
		               bot->sends[0] + SEND_WINDOW_MS - now + 1,
		               resend_later);
		return 0;
	}
	msg = hl_msgq_pop(&bot->up_tx);
	if (bot->nsends < (int)(sizeof(bot->sends) / sizeof(bot->sends[0])))
		bot->sends[bot->nsends++] = now;
	if (lws_write(bot->up_wsi, msg->data + LWS_PRE, msg->len,
	              LWS_WRITE_TEXT) < (int)msg->len) {
		free(msg);
		return -1;
	}
	free(msg);
	if (bot->up_tx.head)
		lws_callback_on_writable(bot->up_wsi);
	return 0;
}

/* Asks for the connection to end with code; the close path reconnects. */
static void close_upstream(hl_bot *bot, int code)
{
	if (bot->up_wsi == NULL)
		return;
	bot->up_close_code = code;
	lws_callback_on_writable(bot->up_wsi);
	/* A dead peer may never let the close frame out: cut it then. */
	lws_set_timeout(bot->up_wsi, PENDING_TIMEOUT_CLOSE_SEND, 3);
}

/* ---- connecting ------------------------------------------------------- */

static void retry_fire(hl_timer *timer)
{
	hl_bot *bot = lws_container_of(timer, hl_bot, retry_timer);

	if (bot->up_state == UP_WAITING)
		hl_up_start(bot);
}

static void schedule_connect(hl_bot *bot, int64_t delay_ms)
{
	bot->up_state = UP_WAITING;
	hl_timer_start(bot->eng, &bot->retry_timer, delay_ms, retry_fire);
}

/* Connects in ms, as after a failure (a bot handed over in backoff). */
void hl_up_start_after(hl_bot *bot, int64_t ms)
{
	schedule_connect(bot, ms);
}

/* Exponential backoff with full jitter, reset after a stable session. */
static int64_t backoff_ms(hl_bot *bot)
{
	int64_t cap = BACKOFF_BASE_MS;
	int i;

	for (i = 0; i < bot->attempts && cap < BACKOFF_CAP_MS; i++)
		cap *= 2;
	if (cap > BACKOFF_CAP_MS)
		cap = BACKOFF_CAP_MS;
	bot->attempts++;
	return (int64_t)(hl_random() * (double)cap);
}

void hl_up_start(hl_bot *bot)
{
	hl_engine *eng = bot->eng;
	hl_job *job;
	const char *url = NULL;

	if (bot->up_state == UP_FATAL || eng->stopping)
		return;
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		schedule_connect(bot, backoff_ms(bot));
		return;
	}
	job->kind = HL_JOB_GATEWAY;
	job->id = bot->id;
	/* A new session needs a fresh look at the day's IDENTIFY budget. */
	if (bot->session_id[0] && bot->resume_url)
		url = bot->resume_url;
	else
		job->lookup = 1;
	if (url == NULL && eng->cfg.gateway_url)
		url = eng->cfg.gateway_url;
	job->connect_url = url ? strdup(url) : NULL;
	job->token = strdup(bot->token);
	bot->up_state = UP_PREPARING;
	hl_rest_submit(eng->rest, job);
}

static int connect_to(hl_bot *bot, const char *url_text, const char *address)
{
	struct lws_client_connect_info ci;
	char path[1100], host[300];
	hl_url url;

	if (hl_url_parse(url_text, &url) != 0)
		return -1;
	/* Host carries the port unless it is the scheme's default. */
	if (url.port == (url.tls ? 443 : 80))
		snprintf(host, sizeof(host), "%s", url.host);
	else
		snprintf(host, sizeof(host), "%s:%d", url.host, url.port);
	snprintf(path, sizeof(path), "%s%sv=10&encoding=json", url.path,
	         strchr(url.path, '?') ? "&" : "?");

	memset(&ci, 0, sizeof(ci));
	ci.context = bot->eng->lws;
	ci.vhost = bot->eng->up_vh;
	ci.address = address;
	ci.port = url.port;
	ci.host = host;
	ci.origin = host;
	ci.path = path;
	ci.protocol = NULL;
	ci.local_protocol_name = "discord-up";
	ci.ssl_connection = url.tls ? LCCSCF_USE_SSL : 0;
	ci.userdata = bot;
	ci.pwsi = &bot->up_wsi;
	ci.retry_and_idle_policy = &hl_net_no_idle_check;

	bot->up_state = UP_CONNECTING;
	bot->up_close_code = 0;
	if (lws_client_connect_via_info(&ci) == NULL) {
		bot->up_wsi = NULL;
		return -1;
	}
	return 0;
}

static void unblock(hl_timer *timer)
{
	hl_bot *bot = lws_container_of(timer, hl_bot, retry_timer);

	if (bot->up_state == UP_BLOCKED)
		hl_up_start(bot);
}

/*
 * Below the reserve of daily IDENTIFYs the bot waits for the reset
 * instead of spending the last ones (or getting its token reset).
 */
static int block_on_budget(hl_bot *bot)
{
	int64_t wait = hl_coord_budget_wait(bot);

	if (wait <= 0)
		return 0;
	hl_logf(bot->eng->log, HL_ERROR,
	        "identify budget exhausted bot=%s remaining=%d reserve=%d "
	        "reset_in_s=%lld; not identifying until then",
	        bot->token_hash, bot->starts_remaining,
	        bot->eng->cfg.identify_reserve, (long long)(wait / 1000));
	bot->up_state = UP_BLOCKED;
	hl_timer_start(bot->eng, &bot->retry_timer,
	               wait + (int64_t)(hl_random() * 1000), unblock);
	return 1;
}

/* The rest thread has looked up the gateway and resolved its host. */
void hl_up_on_gateway(hl_bot *bot, hl_job *job)
{
	hl_engine *eng = bot->eng;
	const char *url;

	if (bot->up_state != UP_PREPARING)
		return;
	if (job->max_concurrency > 0)
		bot->max_concurrency = job->max_concurrency;
	hl_coord_budget(bot, job);
	if (job->gateway_url) {
		free(bot->gateway_url);
		bot->gateway_url = job->gateway_url;
		job->gateway_url = NULL;
	}
	url = job->connect_url ? job->connect_url : bot->gateway_url;
	if (job->error[0] || url == NULL) {
		int64_t delay = backoff_ms(bot);

		hl_logf(eng->log, HL_WARN,
		        "upstream lookup failed bot=%s error=\"%s\" "
		        "retry_ms=%lld",
		        bot->token_hash, job->error, (long long)delay);
		schedule_connect(bot, delay);
		return;
	}
	if (!bot->session_id[0] && block_on_budget(bot))
		return;
	if (connect_to(bot, url, job->address) != 0) {
		int64_t delay = backoff_ms(bot);

		hl_logf(eng->log, HL_WARN,
		        "upstream connect failed bot=%s retry_ms=%lld",
		        bot->token_hash, (long long)delay);
		schedule_connect(bot, delay);
	}
}

/* ---- session ---------------------------------------------------------- */

static void heartbeat_fire(hl_timer *timer)
{
	hl_bot *bot = lws_container_of(timer, hl_bot, hb_timer);
	int64_t now = hl_mono_ms();

	if (bot->up_wsi == NULL)
		return;
	if (!bot->hb_acked && bot->hb_sent_ms > 0) {
		hl_logf(bot->eng->log, HL_WARN,
		        "upstream zombie bot=%s no_ack_ms=%lld, resuming",
		        bot->token_hash, (long long)(now - bot->hb_sent_ms));
		close_upstream(bot, CLOSE_RESUMABLE);
		return;
	}
	if (bot->hb_due_ms && now - bot->hb_due_ms > bot->hb_late_max_ms)
		bot->hb_late_max_ms = now - bot->hb_due_ms;
	send_heartbeat(bot);
	bot->hb_due_ms = now + bot->heartbeat_ms;
	hl_timer_start(bot->eng, &bot->hb_timer, bot->heartbeat_ms,
	               heartbeat_fire);
}

static void send_identify(hl_bot *bot)
{
	cJSON *msg = cJSON_CreateObject();
	char *text;

	bot->identify_pending = 0;
	cJSON_AddNumberToObject(msg, "op", 2);
	cJSON_AddItemToObject(msg, "d", cJSON_Duplicate(bot->identify, 1));
	text = cJSON_PrintUnformatted(msg);
	cJSON_Delete(msg);
	if (text == NULL)
		return;
	hl_coord_identified(bot);
	bot->identifies++;
	bot->up_state = UP_IDENTIFYING;
	queue_up(bot, text, strlen(text), 0);
	memset(text, 0, strlen(text));
	free(text);
	hl_logf(bot->eng->log, HL_INFO, "upstream identify bot=%s shard=%d/%d",
	        bot->token_hash, bot->shard[0], bot->shard[1]);
}

static void identify_fire(hl_timer *timer)
{
	hl_bot *bot = lws_container_of(timer, hl_bot, retry_timer);

	if (bot->identify_pending && bot->up_wsi)
		send_identify(bot);
}

static void send_resume(hl_bot *bot)
{
	cJSON *msg = cJSON_CreateObject(), *d = cJSON_CreateObject();
	char *text;

	cJSON_AddNumberToObject(msg, "op", 6);
	cJSON_AddStringToObject(d, "token", bot->token);
	cJSON_AddStringToObject(d, "session_id", bot->session_id);
	cJSON_AddNumberToObject(d, "seq", (double)bot->up_seq);
	cJSON_AddItemToObject(msg, "d", d);
	text = cJSON_PrintUnformatted(msg);
	cJSON_Delete(msg);
	if (text == NULL)
		return;
	bot->up_state = UP_RESUMING;
	queue_up(bot, text, strlen(text), 0);
	memset(text, 0, strlen(text));
	free(text);
}

static void on_hello(hl_bot *bot, cJSON *d)
{
	cJSON *iv = cJSON_GetObjectItemCaseSensitive(d, "heartbeat_interval");
	int64_t first, wait;

	bot->heartbeat_ms =
	        cJSON_IsNumber(iv) && iv->valueint > 0 ? iv->valueint : 41250;
	bot->hb_acked = 1;
	bot->hb_sent_ms = 0;
	first = (int64_t)(hl_random() * bot->heartbeat_ms);
	bot->hb_due_ms = hl_mono_ms() + first;
	hl_timer_start(bot->eng, &bot->hb_timer, first, heartbeat_fire);

	if (bot->session_id[0]) {
		send_resume(bot);
		return;
	}
	wait = hl_coord_identify_wait(bot);
	if (wait <= 0) {
		send_identify(bot);
		return;
	}
	/* Another IDENTIFY of this token and bucket went out recently. */
	bot->identify_pending = 1;
	bot->up_state = UP_IDENTIFYING;
	wait += (int64_t)(hl_random() * 250);
	hl_timer_start(bot->eng, &bot->retry_timer, wait, identify_fire);
}

/* Forgets the upstream session; the host's session goes with it. */
static void lose_session(hl_bot *bot, const char *why)
{
	hl_logf(bot->eng->log, HL_WARN,
	        "upstream session lost bot=%s reason=%s, identifying anew",
	        bot->token_hash, why);
	bot->session_id[0] = '\0';
	bot->up_seq = 0;
	free(bot->resume_url);
	bot->resume_url = NULL;
	hl_session_forget(bot);
	if (bot->restoring)
		hl_session_abandon(bot);
	if (bot->ds_seq == 0)
		return; /* the host has no session yet: it waits for READY */
	hl_down_invalidate(bot);
}

static void on_ready(hl_bot *bot, cJSON *d)
{
	cJSON *sid = cJSON_GetObjectItemCaseSensitive(d, "session_id");
	cJSON *rurl = cJSON_GetObjectItemCaseSensitive(d, "resume_gateway_url");
	cJSON *user = cJSON_GetObjectItemCaseSensitive(d, "user");
	cJSON *uid = cJSON_GetObjectItemCaseSensitive(user, "id");

	if (bot->restoring)
		hl_session_abandon(bot); /* a new session replaces it */
	if (cJSON_IsString(sid))
		snprintf(bot->session_id, sizeof(bot->session_id), "%s",
		         sid->valuestring);
	free(bot->resume_url);
	bot->resume_url =
	        cJSON_IsString(rurl) ? strdup(rurl->valuestring) : NULL;
	if (cJSON_IsString(uid))
		snprintf(bot->user_id, sizeof(bot->user_id), "%s",
		         uid->valuestring);
	free(bot->ready_d);
	bot->ready_d = cJSON_PrintUnformatted(d);
	cJSON_Delete(bot->guilds);
	bot->guilds = cJSON_CreateObject();
	bot->snapshot_now = 1;
	bot->up_state = UP_READY;
	bot->ready_since_ms = hl_mono_ms();
	hl_logf(bot->eng->log, HL_INFO, "upstream ready bot=%s user=%s",
	        bot->token_hash, bot->user_id);
	hl_down_session_new(bot);
}

/* A dispatch that changes what the engine keeps of a guild. */
static int changes_guild(const char *t, size_t tlen)
{
	return (tlen == 12 && memcmp(t, "GUILD_CREATE", 12) == 0) ||
	       (tlen == 12 && memcmp(t, "GUILD_DELETE", 12) == 0) ||
	       hl_guild_folds(t, tlen);
}

static void on_dispatch(hl_bot *bot, cJSON *msg, int has_cdn);

/* Sends the dispatches held while a restored session was confirmed. */
static void forward_held(hl_bot *bot, cJSON *held)
{
	cJSON *msg;

	cJSON_ArrayForEach (msg, held) {
		on_dispatch(bot, msg, 1);
	}
	cJSON_Delete(held);
}

static void on_dispatch(hl_bot *bot, cJSON *msg, int has_cdn)
{
	cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "t");
	cJSON *s = cJSON_GetObjectItemCaseSensitive(msg, "s");
	cJSON *d = cJSON_GetObjectItemCaseSensitive(msg, "d");

	if (cJSON_IsNumber(s))
		bot->up_seq = (int64_t)s->valuedouble;
	if (!cJSON_IsString(t))
		return;
	if (strcmp(t->valuestring, "READY") == 0) {
		on_ready(bot, d);
	} else if (strcmp(t->valuestring, "RESUMED") == 0) {
		bot->up_state = UP_READY;
		bot->ready_since_ms = hl_mono_ms();
		bot->resumes++;
		hl_logf(bot->eng->log, HL_INFO,
		        "upstream resumed bot=%s seq=%lld", bot->token_hash,
		        (long long)bot->up_seq);
		if (bot->restoring)
			forward_held(bot, hl_session_confirmed(bot));
		return; /* the host never saw this connection drop */
	} else if (bot->restoring) {
		/* Replayed for a session the host does not know yet. */
		hl_session_hold(bot, msg);
		return;
	} else if (changes_guild(t->valuestring, strlen(t->valuestring))) {
		if (hl_guild_event(bot->guilds, t->valuestring, d))
			hl_session_guild_changed(bot, t->valuestring, d);
	}
	if (has_cdn)
		hl_rewrite_cdn(d, bot->eng->origin);
	bot->dispatches++;
	hl_down_dispatch(bot, t->valuestring, d);
}

static int name_is(const char *p, size_t n, const char *name)
{
	return n == strlen(name) && memcmp(p, name, n) == 0;
}

/*
 * A dispatch that goes to the host as it came, without a parse: not one
 * that changes the session (READY, RESUMED, what is kept of guilds); the
 * caller has ruled out frames held for a session being restored and
 * frames with CDN links to rewrite. Returns 1 when it was forwarded.
 */
static int forward_as_is(hl_bot *bot, const hl_frame *f)
{
	if (f->op != 0 || f->odd || f->t == NULL || f->d == NULL ||
	    f->s == HL_FRAME_ODD)
		return 0;
	if (name_is(f->t, f->tlen, "READY") ||
	    name_is(f->t, f->tlen, "RESUMED") || changes_guild(f->t, f->tlen))
		return 0;
	if (f->s >= 0)
		bot->up_seq = f->s;
	bot->dispatches++;
	hl_down_dispatch_raw(bot, f->t, f->tlen, f->d, f->dlen);
	return 1;
}

static void on_message(hl_bot *bot, const char *text, size_t len)
{
	int has_cdn = memmem(text, len, "discordapp.", 11) != NULL;
	hl_frame f;
	cJSON *msg, *op, *d;

	if (!has_cdn && !bot->restoring && hl_frame_scan(text, len, &f) == 0 &&
	    forward_as_is(bot, &f))
		return;
	msg = cJSON_ParseWithLength(text, len);
	op = cJSON_GetObjectItemCaseSensitive(msg, "op");
	d = cJSON_GetObjectItemCaseSensitive(msg, "d");
	if (!cJSON_IsNumber(op)) {
		hl_logf(bot->eng->log, HL_WARN,
		        "upstream sent a malformed frame bot=%s bytes=%zu",
		        bot->token_hash, len);
		cJSON_Delete(msg);
		return;
	}
	switch (op->valueint) {
	case 0:
		on_dispatch(bot, msg, has_cdn);
		break;
	case 1:
		send_heartbeat(bot);
		break;
	case 7:
		hl_logf(bot->eng->log, HL_INFO,
		        "upstream asked to reconnect bot=%s", bot->token_hash);
		bot->reconnect_ms = 0;
		close_upstream(bot, CLOSE_RESUMABLE);
		break;
	case 9:
		if (!cJSON_IsTrue(d))
			lose_session(bot, "invalid_session");
		bot->reconnect_ms = 1000 + (int64_t)(hl_random() * 4000);
		close_upstream(bot, CLOSE_RESUMABLE);
		break;
	case 10:
		on_hello(bot, d);
		break;
	case 11:
		bot->hb_acked = 1;
		bot->hb_rtt_ms = hl_mono_ms() - bot->hb_sent_ms;
		break;
	default:
		break;
	}
	cJSON_Delete(msg);
}

/*
 * What libwebsockets says of a failed TLS handshake is OpenSSL's error
 * queue, which for a certificate that does not verify holds no reason a
 * person can read; the verification result says which check failed.
 */
static const char *connect_error(struct lws *wsi, const char *said)
{
	SSL *ssl = lws_get_ssl(wsi);
	long verified = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (verified != X509_V_OK)
		return X509_verify_cert_error_string(verified);
	return said ? said : "unknown";
}

/* The connection is gone; decide what comes next. */
static void on_closed(hl_bot *bot, const char *why)
{
	hl_engine *eng = bot->eng;
	int code = bot->peer_close_code;
	int64_t delay;

	hl_timer_stop(&bot->hb_timer);
	hl_timer_stop(&bot->retry_timer);
	hl_net_untrack_up(bot);
	bot->up_wsi = NULL;
	hl_buf_free(&bot->up_rx);
	hl_msgq_clear(&bot->up_tx);
	bot->identify_pending = 0;
	if (bot->up_state == UP_READY || bot->up_state == UP_RESUMING ||
	    bot->up_state == UP_IDENTIFYING)
		bot->drops++;
	if (bot->ready_since_ms &&
	    hl_mono_ms() - bot->ready_since_ms > STABLE_MS)
		bot->attempts = 0;
	bot->ready_since_ms = 0;
	bot->peer_close_code = 0;
	if (eng->stopping) {
		bot->up_state = UP_IDLE;
		return;
	}

	if (is_fatal(code)) {
		bot->up_state = UP_FATAL;
		bot->fatal_code = code;
		hl_logf(eng->log, HL_ERROR,
		        "upstream closed with fatal code bot=%s code=%d; "
		        "not reconnecting",
		        bot->token_hash, code);
		hl_down_fatal(bot, code);
		return;
	}
	if (code == 4007 || code == 4009)
		lose_session(bot, code == 4007 ? "invalid_seq" : "timed_out");

	if (bot->reconnect_ms >= 0) {
		delay = bot->reconnect_ms;
		bot->reconnect_ms = -1;
	} else {
		delay = backoff_ms(bot);
	}
	delay = hl_coord_reconnect_delay(bot, delay);
	hl_logf(eng->log, code ? HL_INFO : HL_WARN,
	        "upstream disconnected bot=%s code=%d why=%s retry_ms=%lld",
	        bot->token_hash, code, why, (long long)delay);
	schedule_connect(bot, delay);
}

int hl_up_callback(struct lws *wsi, enum lws_callback_reasons reason, void *in,
                   size_t len)
{
	hl_bot *bot = lws_wsi_user(wsi);

	if (bot == NULL)
		return reason == LWS_CALLBACK_CLIENT_WRITEABLE ? -1 : 0;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		bot->up_state = UP_HELLO;
		bot->reconnect_ms = -1;
		hl_net_track_up(bot, wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (hl_buf_append(&bot->up_rx, in, len) != 0)
			return -1;
		if (!lws_is_final_fragment(wsi))
			return 0;
		on_message(bot, bot->up_rx.data, bot->up_rx.len);
		bot->up_rx.len = 0;
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return on_writable(bot);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (len >= 2) {
			const unsigned char *p = in;

			bot->peer_close_code = (p[0] << 8) | p[1];
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		hl_logf(bot->eng->log, HL_WARN,
		        "upstream connection failed bot=%s error=\"%s\"",
		        bot->token_hash, connect_error(wsi, in));
		if (bot->up_wsi == wsi || bot->up_wsi == NULL)
			on_closed(bot, "connect_error");
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (bot->up_wsi == wsi)
			on_closed(bot, bot->up_close_code ? "ours" : "peer");
		return 0;
	default:
		return 0;
	}
}

/* Ends the connection without ending the session (engine stop). */
void hl_up_shutdown(hl_bot *bot)
{
	hl_timer_stop(&bot->hb_timer);
	hl_timer_stop(&bot->retry_timer);
	if (bot->up_wsi)
		close_upstream(bot, CLOSE_RESUMABLE);
}

/*
 * Lets go of the connection for an engine that takes over: with keep set
 * and a READY session on it, returns it with no timer of ours left and
 * nothing of ours attached; else cuts it (the next engine connects again)
 * and returns NULL.
 */
struct lws *hl_up_release(hl_bot *bot, int keep)
{
	struct lws *wsi = bot->up_wsi;

	hl_timer_stop(&bot->hb_timer);
	hl_timer_stop(&bot->retry_timer);
	hl_net_untrack_up(bot);
	bot->up_wsi = NULL;
	if (wsi == NULL)
		return NULL;
	lws_set_wsi_user(wsi, NULL);
	if (keep && bot->up_state == UP_READY && !bot->up_close_code)
		return wsi;
	if (bot->up_state == UP_READY || bot->up_state == UP_RESUMING ||
	    bot->up_state == UP_IDENTIFYING)
		bot->drops++;
	bot->up_state = UP_IDLE;
	lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
	return NULL;
}

/*
 * Goes on with a READY connection that an engine before this one let go
 * of; the caller has set the heartbeat fields and the queues as they were.
 */
void hl_up_adopt(hl_bot *bot, struct lws *wsi)
{
	int64_t wait = bot->hb_due_ms - hl_mono_ms();

	bot->up_wsi = wsi;
	bot->up_state = UP_READY;
	lws_set_wsi_user(wsi, bot);
	hl_net_track_up(bot, wsi);
	hl_timer_start(bot->eng, &bot->hb_timer, wait > 0 ? wait : 0,
	               heartbeat_fire);
	if (bot->up_tx.head)
		lws_callback_on_writable(wsi);
}

const char *hl_up_state_name(const hl_bot *bot)
{
	return state_name(bot->up_state);
}
