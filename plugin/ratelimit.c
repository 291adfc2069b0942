/*
 * ratelimit.c - keeps forwarded REST calls inside Discord's limits.
 *
 * Net thread. Every token gets a limiter. A request waits (instead of
 * earning a 429) when its route's bucket, learned from Discord's
 * X-RateLimit-* headers, has nothing left until its reset; when the
 * token has sent 50 requests in the last second; or while a global 429
 * pauses the token. The first request of a route whose bucket is not yet
 * known goes alone; the others of that route wait for its answer.
 *
 * A 429 that still happens is retried after retry_after when repeating
 * the request is safe: reads, PUT, DELETE, edits, and message creation
 * with enforce_nonce. Invalid requests (401, 403, 429) are counted for
 * the whole engine over a sliding 10 minutes, because Discord bans the
 * IP at 10,000; near that the engine slows every request and warns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define GLOBAL_PER_SEC 50
#define RETRIES_MAX 3
#define PROBE_POLL_MS 50
#define INVALID_WARN 8000
#define INVALID_SLOW 9000
#define INVALID_SLOW_MS 250
#define LIMITERS_MAX 1024

typedef struct hl_route {
	struct hl_route *next;
	char key[192];   /* method and path with ids blanked */
	char bucket[64]; /* Discord's bucket hash, "" while unknown */
	int probing;     /* a request is out to learn the bucket */
} hl_route;

typedef struct hl_bucket {
	struct hl_bucket *next;
	char id[100];  /* bucket hash and major parameter */
	int limit;     /* requests per window */
	int remaining; /* as Discord last said */
	int inflight;  /* sent since, not yet answered */
	int64_t reset_at;
} hl_bucket;

struct hl_limiter {
	struct hl_limiter *next;
	char *token;
	hl_route *routes;
	hl_bucket *buckets;
	int64_t sends[GLOBAL_PER_SEC]; /* ring of the last send times */
	int next_send;
	int64_t global_until;
	int64_t last_used;
	int waiting;
	int rate_limited;
	int invalid;
};

/* ---- limiters ---------------------------------------------------------- */

static void limiter_free(hl_limiter *l)
{
	while (l->routes) {
		hl_route *r = l->routes;

		l->routes = r->next;
		free(r);
	}
	while (l->buckets) {
		hl_bucket *b = l->buckets;

		l->buckets = b->next;
		free(b);
	}
	memset(l->token, 0, strlen(l->token));
	free(l->token);
	free(l);
}

/* Drops the least recently used idle limiter when there are too many. */
static void limiters_trim(hl_engine *eng)
{
	hl_limiter **p, **oldest = NULL;
	int n = 0;

	for (p = &eng->limiters; *p; p = &(*p)->next) {
		n++;
		if ((*p)->waiting == 0 &&
		    (oldest == NULL || (*p)->last_used < (*oldest)->last_used))
			oldest = p;
	}
	if (n > LIMITERS_MAX && oldest) {
		hl_limiter *l = *oldest;

		*oldest = l->next;
		limiter_free(l);
	}
}

hl_limiter *hl_limiter_for(hl_engine *eng, const char *token)
{
	hl_limiter *l;

	for (l = eng->limiters; l; l = l->next) {
		if (strcmp(l->token, token) == 0)
			return l;
	}
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->token = strdup(token);
	if (l->token == NULL) {
		free(l);
		return NULL;
	}
	l->next = eng->limiters;
	eng->limiters = l;
	limiters_trim(eng);
	return l;
}

void hl_limiters_free(hl_engine *eng)
{
	while (eng->limiters) {
		hl_limiter *l = eng->limiters;

		eng->limiters = l->next;
		limiter_free(l);
	}
}

/* ---- routes ------------------------------------------------------------ */

static int is_id(const char *s, size_t n)
{
	return n > 0 && strspn(s, "0123456789") >= n;
}

/*
 * Discord's bucket of a request depends on its method, its route with ids
 * blanked, and the major parameter (the channel, guild or webhook id).
 */
void hl_route_of(const char *method, const char *path, char *key, size_t keylen,
                 char *major, size_t majorlen)
{
	const char *p = path, *prev = "", *seg;
	size_t prevlen = 0, used;

	used = (size_t)snprintf(key, keylen, "%s ", method);
	major[0] = '\0';
	if (strncmp(p, HL_API_PREFIX, strlen(HL_API_PREFIX)) == 0)
		p += strlen(HL_API_PREFIX);
	while (*p == '/' && used + 2 < keylen) {
		size_t n;
		const char *out;

		seg = p + 1;
		n = strcspn(seg, "/?");
		out = seg;
		if (is_id(seg, n) && major[0] == '\0' &&
		    ((prevlen == 8 && !strncmp(prev, "channels", 8)) ||
		     (prevlen == 6 && !strncmp(prev, "guilds", 6)) ||
		     (prevlen == 8 && !strncmp(prev, "webhooks", 8)))) {
			snprintf(major, majorlen, "%.*s", (int)n, seg);
		} else if (is_id(seg, n)) {
			out = ":id";
		} else if (prevlen == 9 && !strncmp(prev, "reactions", 9)) {
			out = ":emoji";
		} else if (major[0] && prevlen == strlen(major) &&
		           !strncmp(prev, major, prevlen) &&
		           strstr(key, "/webhooks/")) {
			out = ":token";
		}
		used += (size_t)snprintf(key + used, keylen - used, "/%.*s",
		                         out == seg ? (int)n : (int)strlen(out),
		                         out);
		if (used >= keylen)
			used = keylen - 1;
		prev = seg;
		prevlen = n;
		p = seg + n;
		if (*p == '?')
			break;
	}
}

static hl_route *route_get(hl_limiter *l, const char *key)
{
	hl_route *r;

	for (r = l->routes; r; r = r->next) {
		if (strcmp(r->key, key) == 0)
			return r;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	snprintf(r->key, sizeof(r->key), "%s", key);
	r->next = l->routes;
	l->routes = r;
	return r;
}

static hl_bucket *bucket_get(hl_limiter *l, const char *hash, const char *major,
                             int create)
{
	char id[100];
	hl_bucket *b;

	snprintf(id, sizeof(id), "%s:%s", hash, major);
	for (b = l->buckets; b; b = b->next) {
		if (strcmp(b->id, id) == 0)
			return b;
	}
	if (!create || (b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	snprintf(b->id, sizeof(b->id), "%s", id);
	b->limit = b->remaining = 1;
	b->next = l->buckets;
	l->buckets = b;
	return b;
}

/* ---- invalid requests, engine-wide ------------------------------------ */

static int invalid_count(hl_engine *eng, int64_t now)
{
	int64_t sec = now / 1000;
	int i, n = 0;

	for (i = 0; i < HL_INVALID_SLOTS; i++) {
		if (sec - eng->invalid_sec[i] < HL_INVALID_SLOTS)
			n += eng->invalid_cnt[i];
	}
	return n;
}

static void invalid_add(hl_engine *eng, int64_t now)
{
	int64_t sec = now / 1000;
	int slot = (int)(sec % HL_INVALID_SLOTS);
	int n;

	if (eng->invalid_sec[slot] != sec) {
		eng->invalid_sec[slot] = sec;
		eng->invalid_cnt[slot] = 0;
	}
	eng->invalid_cnt[slot]++;
	n = invalid_count(eng, now);
	if (n >= INVALID_WARN && now - eng->invalid_warned_ms > 60000) {
		eng->invalid_warned_ms = now;
		hl_logf(eng->log, HL_WARN,
		        "invalid requests in the last 10 min=%d of Discord's "
		        "10000 per IP; slowing down at %d",
		        n, INVALID_SLOW);
	}
}

int hl_invalid_recent(hl_engine *eng)
{
	return invalid_count(eng, hl_mono_ms());
}

/* ---- sending ------------------------------------------------------------ */

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

/* How long the request must wait before it may go; 0 means now. */
static int64_t wait_ms(hl_engine *eng, hl_http *h, int64_t now)
{
	hl_limiter *l = h->limiter;
	int64_t oldest = l->sends[l->next_send], w = 0;
	hl_route *r = route_get(l, h->route);
	hl_bucket *b;

	if (l->global_until > now)
		w = l->global_until - now;
	if (oldest && now - oldest < 1000)
		w = max64(w, oldest + 1000 - now);
	if (r && r->probing)
		w = max64(w, PROBE_POLL_MS);
	if (r && r->bucket[0]) {
		b = bucket_get(l, r->bucket, h->major, 0);
		/* Past its reset a bucket is full again, less what is out. */
		if (b && (b->reset_at <= now ? b->limit : b->remaining) -
		                         b->inflight <=
		                 0)
			w = max64(w, b->reset_at > now ? b->reset_at - now
			                               : PROBE_POLL_MS);
	}
	if (invalid_count(eng, now) >= INVALID_SLOW)
		w = max64(w, INVALID_SLOW_MS);
	return w;
}

static void send_now(hl_engine *eng, hl_http *h, hl_job *job, int64_t now)
{
	hl_limiter *l = h->limiter;
	hl_route *r = route_get(l, h->route);

	l->sends[l->next_send] = now;
	l->next_send = (l->next_send + 1) % GLOBAL_PER_SEC;
	l->last_used = now;
	if (r && r->bucket[0] == '\0')
		r->probing = 1;
	else if (r && strcmp(r->bucket, "-") != 0) {
		hl_bucket *b = bucket_get(l, r->bucket, h->major, 1);

		if (b) {
			b->inflight++;
			h->counted = 1;
		}
	}
	eng->rest_in_flight++;
	hl_rest_submit(eng->rest, job);
}

static void park(hl_engine *eng, hl_http *h, hl_job *job, int64_t ms);

static void wake(hl_timer *timer)
{
	hl_http *h = lws_container_of(timer, hl_http, wait);
	hl_engine *eng = h->eng;
	hl_job *job = h->parked;
	int64_t now = hl_mono_ms(), w;

	h->parked = NULL;
	h->limiter->waiting--;
	if (h->wsi == NULL && h->jid == 0) {
		/* The host is gone: drop the request rather than send it. */
		hl_job_free(job);
		hl_http_forget(eng, h);
		return;
	}
	if (hl_reply_drop_stale(eng, h)) {
		hl_job_free(job);
		return;
	}
	w = wait_ms(eng, h, now);
	if (w > 0)
		park(eng, h, job, w);
	else
		send_now(eng, h, job, now);
}

static void park(hl_engine *eng, hl_http *h, hl_job *job, int64_t ms)
{
	h->parked = job;
	h->limiter->waiting++;
	hl_timer_start(eng, &h->wait, ms, wake);
}

void hl_limit_submit(hl_engine *eng, hl_http *h, hl_job *job)
{
	int64_t now = hl_mono_ms(), w;

	if (h->limiter == NULL) {
		eng->rest_in_flight++;
		hl_rest_submit(eng->rest, job);
		return;
	}
	hl_route_of(h->method, h->path, h->route, sizeof(h->route), h->major,
	            sizeof(h->major));
	w = wait_ms(eng, h, now);
	if (w > 0)
		park(eng, h, job, w);
	else
		send_now(eng, h, job, now);
}

const char *hl_limiter_token(const hl_limiter *l)
{
	return l->token;
}

/* Sends the request again after ms, the same bytes, through the limits. */
void hl_limit_retry(hl_engine *eng, hl_http *h, hl_job *job, int64_t ms)
{
	job->status = 0;
	job->resp_headers.len = 0;
	job->resp_body.len = 0;
	if (h->limiter == NULL) {
		/* No limits to wait on (no token): straight out again. */
		eng->rest_in_flight++;
		hl_rest_submit(eng->rest, job);
		return;
	}
	park(eng, h, job, ms);
}

void hl_limit_cancel(hl_http *h)
{
	if (h->parked == NULL)
		return;
	hl_timer_stop(&h->wait);
	h->limiter->waiting--;
	hl_job_free(h->parked);
	h->parked = NULL;
}

/* ---- answers --------------------------------------------------------------
 */

/* The value of header name (lower case, with colon) in "Name: v\r\n" lines. */
static int header(const hl_job *job, const char *name, char *out, size_t len)
{
	const char *p = job->resp_headers.data;
	size_t n = strlen(name);

	while (p && *p) {
		const char *eol = strstr(p, "\r\n");

		if (eol == NULL)
			eol = p + strlen(p);
		if (strncasecmp(p, name, n) == 0) {
			const char *v = p + n;

			while (*v == ' ')
				v++;
			snprintf(out, len, "%.*s", (int)(eol - v), v);
			return 1;
		}
		p = *eol ? eol + 2 : eol;
	}
	return 0;
}

static int64_t retry_after_ms(const hl_job *job)
{
	cJSON *root =
	        cJSON_ParseWithLength(job->resp_body.data, job->resp_body.len);
	cJSON *ra = cJSON_GetObjectItemCaseSensitive(root, "retry_after");
	char value[32];
	int64_t ms = 1000;

	if (cJSON_IsNumber(ra))
		ms = (int64_t)(ra->valuedouble * 1000);
	else if (header(job, "retry-after:", value, sizeof(value)))
		ms = (int64_t)(atof(value) * 1000);
	cJSON_Delete(root);
	return ms > 0 ? ms : 1;
}

/* The request no longer holds a place in its bucket's in-flight count. */
static void release(hl_limiter *l, hl_http *h)
{
	hl_route *r = h->counted ? route_get(l, h->route) : NULL;
	hl_bucket *b = r ? bucket_get(l, r->bucket, h->major, 0) : NULL;

	if (b && b->inflight > 0)
		b->inflight--;
	h->counted = 0;
}

static void learn(hl_limiter *l, hl_http *h, const hl_job *job, int64_t now)
{
	hl_route *r = route_get(l, h->route);
	char hash[64], value[32];
	hl_bucket *b;

	if (r == NULL)
		return;
	r->probing = 0;
	if (!header(job, "x-ratelimit-bucket:", hash, sizeof(hash))) {
		/* A 5xx from a proxy in front of Discord, say. */
		release(l, h);
		if (r->bucket[0] == '\0')
			snprintf(r->bucket, sizeof(r->bucket), "-");
		return;
	}
	if (strcmp(r->bucket, hash) != 0)
		release(l, h); /* counted in the bucket the route had */
	snprintf(r->bucket, sizeof(r->bucket), "%s", hash);
	b = bucket_get(l, hash, h->major, 1);
	if (b == NULL)
		return;
	if (h->counted && b->inflight > 0)
		b->inflight--;
	h->counted = 0;
	if (header(job, "x-ratelimit-limit:", value, sizeof(value)))
		b->limit = atoi(value);
	if (header(job, "x-ratelimit-remaining:", value, sizeof(value)))
		b->remaining = atoi(value);
	if (header(job, "x-ratelimit-reset-after:", value, sizeof(value)))
		b->reset_at = now + (int64_t)(atof(value) * 1000) + 1;
}

/* Repeating the request cannot create a second effect. */
static int safe_to_repeat(const hl_http *h, const hl_job *job)
{
	const char *m = h->method;

	if (!strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") ||
	    !strcmp(m, "DELETE") || !strcmp(m, "PATCH") ||
	    !strcmp(m, "OPTIONS"))
		return 1;
	return job->body.data &&
	       (strstr(job->body.data, "\"enforce_nonce\":true") ||
	        strstr(job->body.data, "\"enforce_nonce\": true"));
}

/* Returns 1 when the request was queued again and must not be answered. */
int hl_limit_on_answer(hl_engine *eng, hl_http *h, hl_job *job)
{
	hl_limiter *l = h->limiter;
	int64_t now = hl_mono_ms(), wait;
	char scope[16] = "", global[8] = "";

	if (l == NULL)
		return 0;
	if (job->status == 0) {
		release(l, h); /* no answer: nothing to learn */
		return 0;
	}
	learn(l, h, job, now);
	if (job->status != 401 && job->status != 403 && job->status != 429)
		return 0;

	header(job, "x-ratelimit-scope:", scope, sizeof(scope));
	if (strcmp(scope, "shared") != 0) {
		l->invalid++;
		invalid_add(eng, now);
	}
	if (job->status != 429)
		return 0;
	l->rate_limited++;
	wait = retry_after_ms(job);
	header(job, "x-ratelimit-global:", global, sizeof(global));
	if (!strcasecmp(global, "true") ||
	    (job->resp_body.data &&
	     strstr(job->resp_body.data, "\"global\":true")))
		l->global_until = now + wait;
	hl_logf(eng->log, HL_WARN,
	        "rest rate limited route=\"%s\" retry_ms=%lld scope=%s%s",
	        h->route, (long long)wait, scope[0] ? scope : "bucket",
	        l->global_until > now ? " global" : "");
	if (h->retries >= RETRIES_MAX || !safe_to_repeat(h, job))
		return 0;
	h->retries++;
	hl_limit_retry(eng, h, job, wait);
	return 1;
}

void hl_limit_status(hl_engine *eng, const char *token, cJSON *o)
{
	hl_limiter *l;

	for (l = eng->limiters; l; l = l->next) {
		if (strcmp(l->token, token) == 0)
			break;
	}
	cJSON_AddNumberToObject(o, "rest_waiting", l ? l->waiting : 0);
	cJSON_AddNumberToObject(o, "rest_429s", l ? l->rate_limited : 0);
	cJSON_AddNumberToObject(o, "rest_invalid", l ? l->invalid : 0);
}
