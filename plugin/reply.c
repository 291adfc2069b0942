/*
 * reply.c - durable replies: the net thread's side of the journal.
 *
 * A message the host creates or edits is a reply someone is waiting for.
 * When a state directory is configured, such a request is held back until
 * the disk thread has synced it to the journal, and only then sent to
 * Discord. A message create carries a nonce with enforce_nonce, the
 * host's own or one added here, so every later attempt is the same bytes
 * and Discord keeps one message however often it arrives.
 *
 * A journaled reply that fails on the way (no answer, a 5xx, a 429 past
 * the limiter's retries) is tried again with backoff, even when the host
 * has gone; after the last try it stays in the journal. What an earlier
 * run left in the journal is sent again when the host next shows the
 * bot's token, on a REST request or a gateway IDENTIFY.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "internal.h"

#define ATTEMPTS_MAX 6
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 30000
#define NONCE_HEX_BYTES 10 /* 20 characters; Discord allows 25 */
#define RECENT_EDITS_MAX 64

/* The reply routes: POST .../messages and PATCH .../messages/ID. */
static int is_reply_route(const char *method, const char *path)
{
	static const char prefix[] = HL_API_PREFIX "/channels/";
	const char *p = path;
	size_t n;

	if (strncmp(p, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	p += sizeof(prefix) - 1;
	n = strspn(p, "0123456789");
	if (n == 0 || strncmp(p + n, "/messages", 9) != 0)
		return 0;
	p += n + 9;
	if (strcmp(method, "POST") == 0)
		return *p == '\0';
	if (strcmp(method, "PATCH") != 0 || *p != '/')
		return 0;
	n = strspn(p + 1, "0123456789");
	return n > 0 && p[1 + n] == '\0';
}

static int is_reply(const hl_http *h)
{
	return is_reply_route(h->method, h->path);
}

static const char *header_value(const struct curl_slist *list, const char *name)
{
	size_t n = strlen(name);

	for (; list; list = list->next) {
		if (strncasecmp(list->data, name, n) == 0 &&
		    list->data[n] == ':') {
			const char *v = list->data + n + 1;

			while (*v == ' ')
				v++;
			return v;
		}
	}
	return "";
}

/*
 * Makes sure the JSON object in text[0, *len) has a nonce and
 * enforce_nonce, adding what is missing right after its opening brace so
 * that nothing else in the host's bytes changes. The nonce in force goes
 * to nonce. Returns the new text (malloc'd), or NULL when the text is not
 * a JSON object or memory ran out.
 */
static char *nonce_json(const char *text, size_t *len, char nonce[26])
{
	cJSON *root = cJSON_ParseWithLength(text, *len), *n;
	hl_buf add = { 0 }, out = { 0 };
	const char *brace;
	char fresh[2 * NONCE_HEX_BYTES + 1];

	if (!cJSON_IsObject(root))
		goto fail;
	n = cJSON_GetObjectItemCaseSensitive(root, "nonce");
	if (cJSON_IsString(n) && n->valuestring[0] &&
	    strlen(n->valuestring) <= 25) {
		snprintf(nonce, 26, "%s", n->valuestring);
	} else if (cJSON_IsNumber(n)) {
		snprintf(nonce, 26, "%.0f", n->valuedouble);
	} else if (n == NULL) {
		hl_random_hex(fresh, NONCE_HEX_BYTES);
		snprintf(nonce, 26, "%s", fresh);
		hl_buf_appendf(&add, "\"nonce\":\"%s\"", fresh);
	} else {
		goto fail; /* a nonce Discord would refuse anyway */
	}
	if (!cJSON_GetObjectItemCaseSensitive(root, "enforce_nonce"))
		hl_buf_appendf(&add, "%s\"enforce_nonce\":true",
		               add.len ? "," : "");
	if (add.len && root->child)
		hl_buf_append(&add, ",", 1);

	brace = memchr(text, '{', *len);
	if (brace == NULL ||
	    hl_buf_append(&out, text, (size_t)(brace - text) + 1) ||
	    (add.len && hl_buf_append(&out, add.data, add.len)) ||
	    hl_buf_append(&out, brace + 1, *len - (size_t)(brace - text) - 1) ||
	    hl_buf_append(&out, "", 1))
		goto fail;
	*len = out.len - 1;
	hl_buf_free(&add);
	cJSON_Delete(root);
	return out.data;

fail:
	hl_buf_free(&add);
	hl_buf_free(&out);
	cJSON_Delete(root);
	return NULL;
}

/*
 * The multipart body of a message with files keeps its JSON in the part
 * named payload_json. Finds that part's bytes: [*start, *end).
 */
static int payload_part(const hl_buf *body, const char *ctype, size_t *start,
                        size_t *end)
{
	const char *b = strstr(ctype, "boundary="), *name, *from, *to;
	char delim[128];
	size_t blen;

	if (b == NULL || body->data == NULL)
		return -1;
	b += 9;
	blen = strcspn(b, "; ");
	if (*b == '"') {
		b++;
		blen = strcspn(b, "\"");
	}
	if (blen == 0 || blen > sizeof(delim) - 5)
		return -1;
	snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)blen, b);
	name = memmem(body->data, body->len, "name=\"payload_json\"", 19);
	if (name == NULL)
		return -1;
	from = memmem(name, body->len - (size_t)(name - body->data), "\r\n\r\n",
	              4);
	if (from == NULL)
		return -1;
	from += 4;
	to = memmem(from, body->len - (size_t)(from - body->data), delim,
	            strlen(delim));
	if (to == NULL)
		return -1;
	*start = (size_t)(from - body->data);
	*end = (size_t)(to - body->data);
	return 0;
}

/* Gives a message create its nonce, in JSON or multipart. */
static int add_nonce(hl_job *job, const char *ctype, char nonce[26])
{
	hl_buf *body = &job->body;
	size_t start = 0, end = body->len, len;
	hl_buf out = { 0 };
	char *json;

	if (strncasecmp(ctype, "multipart/", 10) == 0 &&
	    payload_part(body, ctype, &start, &end) != 0)
		return -1;
	len = end - start;
	json = nonce_json(body->data + start, &len, nonce);
	if (json == NULL)
		return -1;
	if (hl_buf_append(&out, body->data, start) ||
	    hl_buf_append(&out, json, len) ||
	    hl_buf_append(&out, body->data + end, body->len - end)) {
		free(json);
		hl_buf_free(&out);
		return -1;
	}
	free(json);
	hl_buf_free(body);
	*body = out;
	return 0;
}

static hl_jentry *entry_of(hl_http *h, const hl_job *job, const char *ctype,
                           const char *nonce)
{
	hl_jentry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->created_ms = hl_now_ms();
	snprintf(e->nonce, sizeof(e->nonce), "%s", nonce);
	hl_token_key(hl_limiter_token(h->limiter), e->key);
	snprintf(e->method, sizeof(e->method), "%s", h->method);
	e->path = strdup(h->path);
	e->content_type = strdup(ctype);
	e->body = malloc(job->body.len ? job->body.len : 1);
	if (e->path == NULL || e->content_type == NULL || e->body == NULL) {
		hl_jentry_free(e);
		return NULL;
	}
	memcpy(e->body, job->body.data, job->body.len);
	e->body_len = job->body.len;
	return e;
}

/*
 * Called before a request goes out. Returns 1 when it is a reply that now
 * waits for the journal (the job is kept in h->held), 0 when the caller
 * sends it as it is.
 */
int hl_reply_hold(hl_engine *eng, hl_http *h, hl_job *job)
{
	const char *ctype = header_value(job->headers, "content-type");
	char nonce[26];
	hl_job *disk;

	if (eng->disk == NULL || h->limiter == NULL || !is_reply(h))
		return 0;
	if (strcmp(h->method, "POST") == 0) {
		if (add_nonce(job, ctype, nonce) != 0) {
			hl_logf(eng->log, HL_WARN,
			        "reply body is not a message object path=%s; "
			        "sent without a journal entry",
			        h->path);
			return 0;
		}
	} else {
		/* An edit is the same edit however often it is made. */
		hl_random_hex(nonce, NONCE_HEX_BYTES);
	}

	disk = calloc(1, sizeof(*disk));
	if (disk == NULL)
		return 0;
	disk->entry = entry_of(h, job, ctype, nonce);
	if (disk->entry == NULL) {
		free(disk);
		return 0;
	}
	disk->kind = HL_JOB_JOURNAL;
	disk->id = h->id;
	h->held = job;
	hl_disk_submit(eng->disk, disk);
	return 1;
}

/* The journal has synced a reply (or failed to): now it goes out. */
void hl_reply_on_journaled(hl_engine *eng, hl_job *done)
{
	hl_http *h;
	hl_job *job;

	for (h = eng->https; h; h = h->next) {
		if (h->id == done->id && h->held)
			break;
	}
	if (h == NULL) {
		hl_job_free(done);
		return;
	}
	if (done->jerr == 0)
		h->jid = done->entry->id;
	job = h->held;
	h->held = NULL;
	hl_job_free(done);
	hl_limit_submit(eng, h, job);
}

static void journal_done(hl_engine *eng, uint64_t jid)
{
	hl_job *job = calloc(1, sizeof(*job));

	/* Without the mark it goes out again after a restart, same nonce. */
	if (job == NULL)
		return;
	job->kind = HL_JOB_JOURNAL_DONE;
	job->jid = jid;
	hl_disk_submit(eng->disk, job);
}

/*
 * Edits of one message must not land out of order, across a restart
 * either: an old text sent over a newer one turns a finished streamed
 * reply back into a partial one. An edit given up on stays in the journal
 * for the next start unless a newer edit of the same message by the same
 * bot got through; the marks below tell which, whichever settles first.
 */
struct hl_edit_mark {
	struct hl_edit_mark *next;
	const hl_limiter *bot; /* one per token */
	char *path;
	uint64_t jid;
	int delivered; /* else given up on */
};

static int is_edit(const hl_http *h)
{
	return strcmp(h->method, "PATCH") == 0 && h->limiter != NULL;
}

static int same_message(const struct hl_edit_mark *m, const hl_http *h)
{
	return m->bot == h->limiter && strcmp(m->path, h->path) == 0;
}

static void mark_edit(hl_engine *eng, const hl_http *h, int delivered)
{
	struct hl_edit_mark *m = calloc(1, sizeof(*m)), **p;
	int recent = 0;

	if (m == NULL || (m->path = strdup(h->path)) == NULL) {
		free(m);
		return;
	}
	m->bot = h->limiter;
	m->jid = h->jid;
	m->delivered = delivered;
	m->next = eng->edits;
	eng->edits = m;
	/* Only the newest delivered edits are kept, and few of them. */
	for (p = &eng->edits; *p;) {
		if ((*p)->delivered && ++recent > RECENT_EDITS_MAX) {
			m = *p;
			*p = m->next;
			free(m->path);
			free(m);
		} else {
			p = &(*p)->next;
		}
	}
}

/* An edit got through: older ones of that message given up on are done.
 */
static void edit_delivered(hl_engine *eng, const hl_http *h)
{
	struct hl_edit_mark **p = &eng->edits, *m;

	while ((m = *p) != NULL) {
		if (!m->delivered && same_message(m, h) && m->jid < h->jid) {
			journal_done(eng, m->jid);
			*p = m->next;
			free(m->path);
			free(m);
		} else {
			p = &m->next;
		}
	}
	mark_edit(eng, h, 1);
}

/* True when a newer edit of h's message by its bot got through. */
static int edit_superseded(const hl_engine *eng, const hl_http *h)
{
	const struct hl_edit_mark *m;

	for (m = eng->edits; m; m = m->next) {
		if (m->delivered && same_message(m, h) && m->jid > h->jid)
			return 1;
	}
	return 0;
}

/*
 * Called when a journaled request has waited its turn and is about to go
 * out. An edit of a message that a newer edit has reached meanwhile would
 * put the older text back, so it is settled instead: done in the journal,
 * and its host gets the failure Discord gave its last try. Returns 1 when
 * the request was dropped.
 */
int hl_reply_drop_stale(hl_engine *eng, hl_http *h)
{
	if (h->jid == 0 || !is_edit(h) || !edit_superseded(eng, h))
		return 0;
	hl_logf(eng->log, HL_WARN,
	        "edit not sent again path=%s; a newer edit of the message got "
	        "through while it waited",
	        h->path);
	journal_done(eng, h->jid);
	hl_http_fail(eng, h, h->last_status > 0 ? (int)h->last_status : 502,
	             "heartline: a newer edit of this message was delivered; "
	             "this one was not sent again");
	return 1;
}

void hl_reply_free_edits(hl_engine *eng)
{
	while (eng->edits) {
		struct hl_edit_mark *m = eng->edits;

		eng->edits = m->next;
		free(m->path);
		free(m);
	}
}

/*
 * Called with Discord's answer to a journaled reply. Returns 1 when the
 * reply goes out again later, 0 when it is settled and may be answered.
 */
int hl_reply_settle(hl_engine *eng, hl_http *h, hl_job *job)
{
	long status = job->status;
	int failed = status == 0 || status >= 500 || status == 429;
	int superseded = failed && is_edit(h) && edit_superseded(eng, h);
	int64_t wait;

	if (h->jid == 0)
		return 0;
	/*
	 * XXX: a retry already on its way when a newer edit of the message
	 * gets through can still land after it; one that waits for its turn
	 * is dropped then (hl_reply_drop_stale).
	 */
	if (failed && !superseded && h->attempts + 1 < ATTEMPTS_MAX) {
		wait = (int64_t)BACKOFF_FIRST_MS << h->attempts;
		if (wait > BACKOFF_MAX_MS)
			wait = BACKOFF_MAX_MS;
		h->attempts++;
		h->last_status = job->status;
		hl_logf(eng->log, HL_WARN,
		        "reply not delivered status=%ld path=%s; trying again "
		        "in %lld ms",
		        job->status, h->path, (long long)wait);
		hl_limit_retry(eng, h, job, wait);
		return 1;
	}
	if (superseded) {
		hl_logf(eng->log, HL_WARN,
		        "edit not delivered status=%ld path=%s; a newer edit "
		        "of the message got through, so it is not sent again",
		        job->status, h->path);
		journal_done(eng, h->jid);
	} else if (failed) {
		hl_logf(eng->log, HL_ERROR,
		        "reply not delivered after %d tries path=%s; it stays "
		        "in the journal for the next start",
		        ATTEMPTS_MAX, h->path);
		if (is_edit(h))
			mark_edit(eng, h, 0);
	} else {
		if (job->status >= 400)
			hl_logf(eng->log, HL_WARN,
			        "reply refused by Discord status=%ld path=%s",
			        job->status, h->path);
		journal_done(eng, h->jid);
		if (is_edit(h) && job->status < 300)
			edit_delivered(eng, h);
	}
	h->jid = 0;
	return 0;
}

/* Sends one entry an earlier run left behind, for the bot of token. */
static void resend_entry(hl_engine *eng, const char *token, hl_jentry *e)
{
	hl_http *h = calloc(1, sizeof(*h));
	hl_job *job = calloc(1, sizeof(*job));
	hl_buf url = { 0 }, ctype = { 0 };
	struct curl_slist *headers = hl_auth_headers(token), *next;

	if (h == NULL || job == NULL || headers == NULL)
		goto fail;
	if (hl_buf_appendf(&url, "%s%s", eng->cfg.api_base,
	                   e->path + strlen(HL_API_PREFIX)) ||
	    (e->content_type[0] &&
	     hl_buf_appendf(&ctype, "Content-Type: %s", e->content_type)))
		goto fail;
	if (ctype.data) {
		next = curl_slist_append(headers, ctype.data);
		if (next == NULL)
			goto fail;
		headers = next;
	}
	if (e->body_len && hl_buf_append(&job->body, e->body, e->body_len))
		goto fail;

	h->eng = eng;
	h->id = ++eng->next_id;
	snprintf(h->method, sizeof(h->method), "%s", e->method);
	h->path = strdup(e->path);
	h->limiter = hl_limiter_for(eng, token);
	h->jid = e->id;
	if (h->path == NULL || h->limiter == NULL)
		goto fail;
	for (h->bot = eng->bots; h->bot; h->bot = h->bot->next) {
		if (strcmp(h->bot->token, token) == 0)
			break;
	}
	job->kind = HL_JOB_FORWARD;
	job->id = h->id;
	job->method = strdup(e->method);
	job->url = url.data;
	job->headers = headers;
	hl_buf_free(&ctype);
	h->next = eng->https;
	eng->https = h;
	eng->rest_requests++;
	hl_limit_submit(eng, h, job);
	return;

fail:
	hl_logf(eng->log, HL_ERROR, "journal resend failed: out of memory");
	if (h)
		free(h->path);
	free(h);
	curl_slist_free_all(headers);
	hl_buf_free(&url);
	hl_buf_free(&ctype);
	if (job)
		hl_buf_free(&job->body);
	free(job);
}

/*
 * An edit is superseded when a later pending entry of the same bot edits
 * the same message: an edit replaces the message's content, so sending
 * the older one after the newer could turn a finished streamed reply
 * back into a partial one. Entries are in journal order.
 */
static int superseded_edit(const hl_jscan *r, size_t i)
{
	const hl_jentry *e = r->pending[i];
	size_t j;

	if (strcmp(e->method, "PATCH") != 0)
		return 0;
	for (j = i + 1; j < r->npending; j++) {
		const hl_jentry *later = r->pending[j];

		if (strcmp(later->key, e->key) == 0 &&
		    strcmp(later->method, "PATCH") == 0 &&
		    strcmp(later->path, e->path) == 0)
			return 1;
	}
	return 0;
}

/* Sends again what an earlier run left pending for the bot of token:
 * message creates and, of the edits of each message, the newest. */
void hl_reply_resend(hl_engine *eng, const char *token)
{
	hl_jscan *r = &eng->recovered;
	char key[65], hash[9];
	size_t i, kept = 0;
	int sent = 0, skipped = 0;
	int64_t oldest = 0, now = hl_now_ms();

	if (r->npending == 0)
		return;
	hl_token_key(token, key);
	for (i = 0; i < r->npending; i++) {
		hl_jentry *e = r->pending[i];

		if (strcmp(e->key, key) != 0) {
			r->pending[kept++] = e;
			continue;
		}
		if (superseded_edit(r, i)) {
			journal_done(eng, e->id);
			hl_jentry_free(e);
			skipped++;
			continue;
		}
		if (!is_reply_route(e->method, e->path)) {
			/* Only a damaged or foreign file holds such an entry.
			 */
			hl_logf(eng->log, HL_WARN,
			        "journal entry dropped: not a reply method=%s",
			        e->method);
			hl_jentry_free(e);
			continue;
		}
		if (now - e->created_ms > oldest)
			oldest = now - e->created_ms;
		resend_entry(eng, token, e);
		hl_jentry_free(e);
		sent++;
	}
	r->npending = kept;
	if (sent == 0)
		return;
	hl_token_hash(token, hash);
	hl_logf(eng->log, HL_INFO,
	        "journal resending bot=%s replies=%d oldest_ms=%lld "
	        "older_edits_dropped=%d",
	        hash, sent, (long long)oldest, skipped);
}
