/*
 * coord.c - the reconnect coordinator: when may a bot connect, IDENTIFY
 * or RESUME. One per engine, shared by every bot. Net thread only.
 *
 * Discord allows one IDENTIFY per 5 s per token and concurrency bucket
 * (shard_id % max_concurrency), and a daily number of session starts per
 * token. Bots of one token share that budget; it is read from
 * /gateway/bot before every IDENTIFY and counted down locally between
 * reads. When many sessions drop at once (a network blip), their
 * reconnects are spread over a jitter window so that they do not arrive
 * together; a lone drop reconnects at once.
 */
#include <string.h>

#include "internal.h"

/* Drops within this window that make a herd. */
#define HERD_WINDOW_MS 5000
#define HERD_SIZE 3
/* The time a reconnect takes, kept free at the end of the jitter window. */
#define HANDSHAKE_ALLOWANCE_MS 1000

static int same_token(const hl_bot *a, const hl_bot *b)
{
	return strcmp(a->token, b->token) == 0;
}

/* A bot on its way to an IDENTIFY (not a RESUME) that has not sent it. */
static int about_to_identify(const hl_bot *o)
{
	switch (o->up_state) {
	case UP_PREPARING:
	case UP_CONNECTING:
	case UP_HELLO:
	case UP_IDENTIFYING:
		return o->session_id[0] == '\0';
	default:
		return 0;
	}
}

/*
 * How long until this bot may send IDENTIFY; 0 means now. Within a
 * bucket the shards go in order: a lower shard of the token still on its
 * way to an IDENTIFY goes first, whichever connection was quicker.
 */
int64_t hl_coord_identify_wait(hl_bot *bot)
{
	hl_engine *eng = bot->eng;
	int64_t now = hl_mono_ms(), next = now;
	int mc = bot->max_concurrency > 0 ? bot->max_concurrency : 1;
	hl_bot *o;

	for (o = eng->bots; o; o = o->next) {
		int64_t free_at;

		if (!same_token(o, bot) ||
		    o->shard[0] % mc != bot->shard[0] % mc)
			continue;
		if (o != bot && o->shard[0] < bot->shard[0] &&
		    about_to_identify(o)) {
			free_at = now + eng->cfg.identify_interval_ms;
			if (free_at > next)
				next = free_at;
			continue;
		}
		if (o->last_identify_ms == 0)
			continue;
		free_at = o->last_identify_ms + eng->cfg.identify_interval_ms;
		if (free_at > next)
			next = free_at;
	}
	return next - now;
}

/* An IDENTIFY went out: one session start fewer for the whole token. */
void hl_coord_identified(hl_bot *bot)
{
	hl_bot *o;

	bot->last_identify_ms = hl_mono_ms();
	for (o = bot->eng->bots; o; o = o->next) {
		if (same_token(o, bot) && o->starts_remaining > 0)
			o->starts_remaining--;
	}
}

/* Discord's session_start_limit, as just read, for every bot of a token. */
void hl_coord_budget(hl_bot *bot, const hl_job *job)
{
	int64_t reset_at = hl_mono_ms() + job->starts_reset_ms;
	hl_bot *o;

	if (!job->has_starts)
		return;
	for (o = bot->eng->bots; o; o = o->next) {
		if (!same_token(o, bot))
			continue;
		o->starts_remaining = job->starts_remaining;
		o->starts_total = job->starts_total;
		o->starts_reset_at = reset_at;
	}
}

/*
 * When the token's budget is at the reserve, how long until it refills;
 * 0 when an IDENTIFY may go out.
 */
int64_t hl_coord_budget_wait(hl_bot *bot)
{
	int64_t now = hl_mono_ms();

	if (bot->starts_remaining < 0 ||
	    bot->starts_remaining > bot->eng->cfg.identify_reserve ||
	    bot->starts_reset_at <= now)
		return 0;
	return bot->starts_reset_at - now;
}

/*
 * The delay before reconnecting after a drop: what the caller wanted,
 * unless many sessions dropped together, in which case a random point in
 * the jitter window (never earlier than wanted).
 */
int64_t hl_coord_reconnect_delay(hl_bot *bot, int64_t wanted_ms)
{
	hl_engine *eng = bot->eng;
	int64_t now = hl_mono_ms(), jitter, span, allowance;
	int i, recent = 0, n = (int)(sizeof(eng->drops) / sizeof(*eng->drops));

	eng->drops[eng->ndrops++ % n] = now;
	for (i = 0; i < n && i < eng->ndrops; i++) {
		if (now - eng->drops[i] <= HERD_WINDOW_MS)
			recent++;
	}
	if (recent < HERD_SIZE)
		return wanted_ms;

	/* Starts are spread so that the last is back, its handshake and
	 * RESUME done, by the end of the window, not just under way. */
	span = eng->cfg.jitter_max_ms - eng->cfg.jitter_min_ms;
	allowance = span / 10 < HANDSHAKE_ALLOWANCE_MS ? span / 10
	                                               : HANDSHAKE_ALLOWANCE_MS;
	jitter = eng->cfg.jitter_min_ms +
	         (int64_t)(hl_random() * (double)(span - allowance));
	return jitter > wanted_ms ? jitter : wanted_ms;
}
