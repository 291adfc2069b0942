/*
 * typing.c - keeps a bot's typing indicator alive while its host works.
 *
 * Net thread. Discord shows "typing" for 10 s after each request. The
 * host asks again every few seconds while a run is active, but a stalled
 * host asks late and the indicator goes dark. So the local endpoint
 * answers the host's typing calls itself (204, at once) and this file
 * refreshes the indicator upstream on its own timer, one request per
 * channel per period, however often the host asks.
 *
 * A channel stops typing when its bot posts a message there, when the
 * host has not asked for a hold period (a finished or failed run), or
 * at a cap. A 429 on typing pushes the next request past retry_after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "internal.h"

struct hl_typing {
	struct hl_typing *next;
	hl_engine *eng;
	hl_bot *bot;
	uint64_t id;
	char channel[32];
	int64_t started_ms;
	int64_t asked_ms;   /* the host's last request */
	int64_t blocked_ms; /* no request before this (429) */
	int in_flight;
	hl_timer timer;
};

static hl_typing *find(hl_engine *eng, const hl_bot *bot, const char *ch)
{
	hl_typing *t;

	for (t = eng->typings; t; t = t->next) {
		if (t->bot == bot && strcmp(t->channel, ch) == 0)
			return t;
	}
	return NULL;
}

static void drop(hl_typing *t, const char *why)
{
	hl_engine *eng = t->eng;
	hl_typing **p;

	hl_logf(eng->log, HL_DEBUG,
	        "typing stopped bot=%s channel=%s reason=%s after_ms=%lld",
	        t->bot->token_hash, t->channel, why,
	        (long long)(hl_mono_ms() - t->started_ms));
	hl_timer_stop(&t->timer);
	for (p = &eng->typings; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	free(t);
}

static void send_typing(hl_typing *t)
{
	hl_engine *eng = t->eng;
	hl_job *job = calloc(1, sizeof(*job));
	hl_buf b = { 0 };

	if (job == NULL)
		return;
	job->kind = HL_JOB_TYPING;
	job->id = t->id;
	job->method = strdup("POST");
	hl_buf_appendf(&b, "%s/channels/%s/typing", eng->cfg.api_base,
	               t->channel);
	job->url = b.data;
	job->headers = hl_auth_headers(t->bot->token);
	if (job->method == NULL || job->url == NULL || job->headers == NULL) {
		hl_job_free(job);
		return;
	}
	t->in_flight = 1;
	hl_rest_submit(eng->rest, job);
}

static void tick(hl_timer *timer)
{
	hl_typing *t = lws_container_of(timer, hl_typing, timer);
	const hl_config *cfg = &t->eng->cfg;
	int64_t now = hl_mono_ms(), next = cfg->typing_interval_ms;

	if (now - t->asked_ms > cfg->typing_hold_ms) {
		drop(t, "idle");
		return;
	}
	if (now - t->started_ms > cfg->typing_cap_ms) {
		drop(t, "cap");
		return;
	}
	if (now < t->blocked_ms)
		next = t->blocked_ms - now;
	else if (!t->in_flight)
		send_typing(t);
	hl_timer_start(t->eng, &t->timer, next, tick);
}

void hl_typing_ask(hl_bot *bot, const char *channel)
{
	hl_engine *eng = bot->eng;
	hl_typing *t = find(eng, bot, channel);

	if (t) {
		t->asked_ms = hl_mono_ms();
		return;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return;
	t->eng = eng;
	t->bot = bot;
	t->id = ++eng->next_id;
	snprintf(t->channel, sizeof(t->channel), "%s", channel);
	t->started_ms = t->asked_ms = hl_mono_ms();
	t->next = eng->typings;
	eng->typings = t;
	hl_logf(eng->log, HL_DEBUG, "typing started bot=%s channel=%s",
	        bot->token_hash, channel);
	send_typing(t);
	hl_timer_start(eng, &t->timer, eng->cfg.typing_interval_ms, tick);
}

void hl_typing_stop(hl_bot *bot, const char *channel, const char *why)
{
	hl_typing *t = find(bot->eng, bot, channel);

	if (t)
		drop(t, why);
}

/* Discord's 429 body says how long to wait, in seconds. */
static int64_t retry_after_ms(const hl_job *job)
{
	cJSON *root =
	        cJSON_ParseWithLength(job->resp_body.data, job->resp_body.len);
	cJSON *ra = cJSON_GetObjectItemCaseSensitive(root, "retry_after");
	int64_t ms =
	        cJSON_IsNumber(ra) ? (int64_t)(ra->valuedouble * 1000) : 5000;

	cJSON_Delete(root);
	return ms > 0 ? ms : 1000;
}

void hl_typing_on_answer(hl_engine *eng, hl_job *job)
{
	hl_typing *t;

	for (t = eng->typings; t; t = t->next) {
		if (t->id == job->id)
			break;
	}
	if (t == NULL)
		return; /* stopped while the request was out */
	t->in_flight = 0;
	if (job->status >= 200 && job->status < 300) {
		t->bot->typing++;
	} else if (job->status == 429) {
		int64_t wait = retry_after_ms(job);

		t->blocked_ms = hl_mono_ms() + wait;
		hl_logf(eng->log, HL_WARN,
		        "typing rate limited bot=%s channel=%s retry_ms=%lld",
		        t->bot->token_hash, t->channel, (long long)wait);
	} else {
		hl_logf(eng->log, HL_WARN,
		        "typing failed bot=%s channel=%s status=%ld "
		        "error=\"%s\"",
		        t->bot->token_hash, t->channel, job->status,
		        job->error);
		if (job->status >= 400 && job->status < 500)
			drop(t, "refused");
	}
}

void hl_typing_free_all(hl_engine *eng)
{
	while (eng->typings) {
		hl_typing *t = eng->typings;

		eng->typings = t->next;
		hl_timer_stop(&t->timer);
		free(t);
	}
}
