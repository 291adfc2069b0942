/*
 * http.c - the REST side of the local endpoint.
 *
 * Net thread. A host request under /api/v10/ is collected (headers and
 * body), handed to the rest thread as a job, and answered when the job
 * comes back, with Discord's status, headers and body. Two kinds of
 * request get a little more: the gateway lookup, whose URL is pointed at
 * this endpoint, and the CDN paths that rewrite.c put into dispatches,
 * which are fetched from Discord's CDN without the bot's token.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "internal.h"

#define BODY_MAX (100u << 20)
#define WRITE_CHUNK 16384

static const struct {
	enum lws_token_indexes tok;
	const char *name;
} methods[] = {
	{ WSI_TOKEN_GET_URI, "GET" },         { WSI_TOKEN_POST_URI, "POST" },
	{ WSI_TOKEN_PUT_URI, "PUT" },         { WSI_TOKEN_PATCH_URI, "PATCH" },
	{ WSI_TOKEN_DELETE_URI, "DELETE" },   { WSI_TOKEN_HEAD_URI, "HEAD" },
	{ WSI_TOKEN_OPTIONS_URI, "OPTIONS" },
};

/* Request headers that describe the hop, not the request. */
static const char *const hop_headers[] = {
	"host:",
	"connection:",
	"content-length:",
	"accept-encoding:",
	"upgrade:",
	"transfer-encoding:",
	"keep-alive:",
	"te:",
	"proxy-connection:",
	"expect:",
};

/* Headers lws does not know by name but Discord reads. */
static const char *const custom_headers[] = {
	"x-audit-log-reason:",
	"x-ratelimit-precision:",
};

static hl_engine *engine_of(struct lws *wsi)
{
	return hl_net_engine(wsi);
}

static int is_hop_header(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(hop_headers) / sizeof(hop_headers[0]); i++) {
		if (strcasecmp(name, hop_headers[i]) == 0)
			return 1;
	}
	return 0;
}

/* Percent-encodes what lws decoded, keeping the characters in keep. */
static void append_encoded(hl_buf *b, const char *s, size_t n, const char *keep)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[3] = { '%', hex[c >> 4], hex[c & 15] };

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~", c) ||
		    (c && strchr(keep, c)))
			hl_buf_append(b, s + i, 1);
		else
			hl_buf_append(b, esc, 3);
	}
}

static void append_query(struct lws *wsi, hl_buf *b)
{
	char frag[2048];
	int i, n;

	for (i = 0; (n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag),
	                                       WSI_TOKEN_HTTP_URI_ARGS, i)) > 0;
	     i++) {
		char *eq = strchr(frag, '=');

		hl_buf_append(b, i ? "&" : "?", 1);
		if (eq == NULL) {
			append_encoded(b, frag, (size_t)n, "");
			continue;
		}
		append_encoded(b, frag, (size_t)(eq - frag), "");
		hl_buf_append(b, "=", 1);
		append_encoded(b, eq + 1, strlen(eq + 1), ":,");
	}
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name,
                                     const char *value)
{
	hl_buf line = { 0 };
	struct curl_slist *next;

	/* name carries its colon, as lws spells it. */
	if (hl_buf_appendf(&line, "%s %s", name, value) != 0)
		return list;
	next = curl_slist_append(list, line.data);
	memset(line.data, 0, line.len);
	hl_buf_free(&line);
	return next ? next : list;
}

static struct curl_slist *collect_headers(struct lws *wsi, int for_cdn)
{
	struct curl_slist *list = NULL;
	char value[8192];
	size_t i;
	int tok;

	for (tok = 0; tok < WSI_TOKEN_COUNT; tok++) {
		const char *name = (const char *)lws_token_to_string(tok);
		size_t nlen = name ? strlen(name) : 0;

		if (nlen < 2 || name[0] == ':' || name[nlen - 1] != ':' ||
		    is_hop_header(name))
			continue;
		/* The CDN gets no token: only who is asking. */
		if (for_cdn && strcmp(name, "user-agent:") != 0)
			continue;
		if (lws_hdr_total_length(wsi, tok) <= 0 ||
		    lws_hdr_copy(wsi, value, sizeof(value), tok) < 0)
			continue;
		list = add_header(list, name, value);
	}
	for (i = 0;
	     !for_cdn && i < sizeof(custom_headers) / sizeof(custom_headers[0]);
	     i++) {
		const char *name = custom_headers[i];
		int nlen = (int)strlen(name);

		if (lws_hdr_custom_length(wsi, name, nlen) > 0 &&
		    lws_hdr_custom_copy(wsi, value, sizeof(value), name,
		                        nlen) >= 0)
			list = add_header(list, name, value);
	}
	/* Without this curl would add its own Expect and wait for it. */
	return curl_slist_append(list, "Expect:");
}

/*
 * Finds whom a REST call belongs to, by its Authorization header: the
 * token's rate limits, and its gateway bot if it has one.
 */
static void owner_of_request(hl_engine *eng, hl_http *h)
{
	char auth[512];
	const char *token;
	hl_bot *bot;

	if (lws_hdr_copy(h->wsi, auth, sizeof(auth),
	                 WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
		return;
	token = strncmp(auth, "Bot ", 4) == 0 ? auth + 4 : auth;
	for (bot = eng->bots; bot; bot = bot->next) {
		if (strcmp(bot->token, token) == 0)
			break;
	}
	h->bot = bot;
	h->limiter = hl_limiter_for(eng, token);
	hl_reply_resend(eng, token);
	memset(auth, 0, sizeof(auth));
}

void hl_http_forget(hl_engine *eng, hl_http *h)
{
	hl_http **p;

	hl_limit_cancel(h);
	for (p = &eng->https; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			break;
		}
	}
	free(h->path);
	curl_slist_free_all(h->headers);
	hl_buf_free(&h->body);
	hl_job_free(h->answer);
	hl_job_free(h->held);
	hl_buf_free(&h->out);
	free(h);
}

static void answer_empty(hl_http *h, int status)
{
	h->out_status = status;
	h->out.len = 0;
	lws_callback_on_writable(h->wsi);
}

static void answer_locally(hl_http *h, int status, const char *message)
{
	h->out_status = status;
	h->out.len = 0;
	hl_buf_appendf(&h->out, "{\"message\":\"%s\",\"code\":0}", message);
	lws_callback_on_writable(h->wsi);
}

/* Ends a request that will not be sent after all: its host, if still
 * there, gets `status` with `message`. */
void hl_http_fail(hl_engine *eng, hl_http *h, int status, const char *message)
{
	if (h->wsi == NULL)
		hl_http_forget(eng, h);
	else
		answer_locally(h, status, message);
}

/* Builds the upstream URL of a request, or NULL when it is not ours. */
static char *upstream_url(hl_engine *eng, struct lws *wsi, const char *path,
                          int *for_cdn)
{
	hl_buf b = { 0 };
	const char *base, *rest;

	*for_cdn = 1;
	if (strncmp(path, HL_CDN_PREFIX, strlen(HL_CDN_PREFIX)) == 0) {
		base = eng->cfg.cdn_base;
		rest = path + strlen(HL_CDN_PREFIX) - 1;
	} else if (strncmp(path, HL_MEDIA_PREFIX, strlen(HL_MEDIA_PREFIX)) ==
	           0) {
		base = eng->cfg.media_base;
		rest = path + strlen(HL_MEDIA_PREFIX) - 1;
	} else if (strncmp(path, HL_API_PREFIX "/",
	                   strlen(HL_API_PREFIX) + 1) == 0) {
		*for_cdn = 0;
		base = eng->cfg.api_base;
		rest = path + strlen(HL_API_PREFIX);
	} else {
		return NULL;
	}
	hl_buf_append(&b, base, strlen(base));
	append_encoded(&b, rest, strlen(rest), "/:@!$&'()*+,;=");
	append_query(wsi, &b);
	return b.data;
}

static void submit(hl_engine *eng, hl_http *h)
{
	hl_job *job = calloc(1, sizeof(*job));
	int for_cdn;

	/*
	 * The answer may wait for a rate limit or a slow Discord; lws must
	 * not time the request out meanwhile (the rest thread has its own).
	 */
	lws_set_timeout(h->wsi, NO_PENDING_TIMEOUT, 0);
	if (job == NULL) {
		answer_locally(h, 503, "heartline: out of memory");
		return;
	}
	job->kind = HL_JOB_FORWARD;
	job->id = h->id;
	job->method = strdup(h->method);
	job->url = upstream_url(eng, h->wsi, h->path, &for_cdn);
	if (job->url == NULL || job->method == NULL) {
		hl_job_free(job);
		answer_locally(h, 404, "404: Not Found");
		return;
	}
	job->headers = collect_headers(h->wsi, for_cdn);
	job->body = h->body;
	memset(&h->body, 0, sizeof(h->body));
	eng->rest_requests++;
	if (for_cdn)
		h->limiter = NULL;
	if (hl_reply_hold(eng, h, job))
		return; /* goes out once the journal has it */
	hl_limit_submit(eng, h, job);
}

/*
 * True when path is /api/v10/channels/ID then suffix; the id goes to ch.
 */
static int channel_route(const char *path, const char *suffix, char ch[32])
{
	static const char prefix[] = HL_API_PREFIX "/channels/";
	const char *id = path + sizeof(prefix) - 1;
	size_t n;

	if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	n = strspn(id, "0123456789");
	if (n == 0 || n >= 32 || strcmp(id + n, suffix) != 0)
		return 0;
	memcpy(ch, id, n);
	ch[n] = '\0';
	return 1;
}

/* Typing is kept alive here; a reply ends it. */
static int typing_handled(hl_http *h)
{
	char ch[32];

	if (h->bot == NULL || strcmp(h->method, "POST") != 0)
		return 0;
	if (channel_route(h->path, "/typing", ch)) {
		hl_typing_ask(h->bot, ch);
		answer_empty(h, 204);
		return 1;
	}
	if (channel_route(h->path, "/messages", ch))
		hl_typing_stop(h->bot, ch, "reply");
	return 0;
}

/* The engine's status snapshot, for whoever watches the local endpoint. */
static void answer_status(hl_engine *eng, hl_http *h)
{
	hl_status_refresh(eng);
	pthread_mutex_lock(&eng->status_lock);
	h->out.len = 0;
	if (eng->status_json == NULL ||
	    hl_buf_append(&h->out, eng->status_json,
	                  strlen(eng->status_json)) != 0)
		h->out.len = 0;
	pthread_mutex_unlock(&eng->status_lock);
	h->out_status = h->out.len ? 200 : 503;
	lws_callback_on_writable(h->wsi);
}

static int on_request(struct lws *wsi, hl_http **slot, const char *uri)
{
	hl_engine *eng = engine_of(wsi);
	hl_http *h = calloc(1, sizeof(*h));
	size_t i;

	if (h == NULL)
		return -1;
	h->wsi = wsi;
	h->eng = eng;
	h->id = ++eng->next_id;
	h->path = strdup(uri);
	h->next = eng->https;
	eng->https = h;
	*slot = h;
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (lws_hdr_total_length(wsi, methods[i].tok) > 0)
			snprintf(h->method, sizeof(h->method), "%s",
			         methods[i].name);
	}
	if (h->path == NULL || h->method[0] == '\0') {
		answer_locally(h, 405, "405: Method Not Allowed");
		return 0;
	}
	if (strcmp(h->path, HL_STATUS_PATH) == 0 &&
	    strcmp(h->method, "GET") == 0) {
		answer_status(eng, h);
		return 0;
	}
	owner_of_request(eng, h);
	if (typing_handled(h))
		return 0;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
		return 0; /* a chunked body follows */
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
		char cl[32];

		lws_hdr_copy(wsi, cl, sizeof(cl),
		             WSI_TOKEN_HTTP_CONTENT_LENGTH);
		if (strtoul(cl, NULL, 10) > 0)
			return 0; /* the body follows */
	}
	submit(eng, h);
	return 0;
}

/* Points the gateway lookup at this endpoint. */
static void rewrite_gateway(hl_engine *eng, hl_http *h, hl_job *job)
{
	cJSON *root;
	char *text;

	if (job->status != 200 ||
	    (strcmp(h->path, HL_API_PREFIX "/gateway/bot") != 0 &&
	     strcmp(h->path, HL_API_PREFIX "/gateway") != 0))
		return;
	root = cJSON_ParseWithLength(job->resp_body.data, job->resp_body.len);
	if (root == NULL)
		return;
	cJSON_DeleteItemFromObjectCaseSensitive(root, "url");
	cJSON_AddStringToObject(root, "url", eng->ws_origin);
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (text == NULL)
		return;
	job->resp_body.len = 0;
	hl_buf_append(&job->resp_body, text, strlen(text));
	free(text);
}

static void count_figures(hl_http *h, hl_job *job)
{
	const char *p = h->path;
	size_t n = strlen(p);

	if (h->bot == NULL || strcmp(h->method, "POST") != 0 ||
	    job->status < 200 || job->status >= 300)
		return;
	if (n > 9 && strcmp(p + n - 9, "/messages") == 0)
		h->bot->replies++;
}

void hl_http_on_answer(hl_engine *eng, hl_job *job)
{
	hl_http *h;

	eng->rest_in_flight--;
	for (h = eng->https; h; h = h->next) {
		if (h->id == job->id)
			break;
	}
	if (h == NULL) {
		hl_job_free(job);
		return;
	}
	if (h->wsi == NULL && h->jid == 0) {
		/* The host gave up on this request; nothing to answer. */
		hl_http_forget(eng, h);
		hl_job_free(job);
		return;
	}
	if (hl_limit_on_answer(eng, h, job))
		return; /* sent again once the limit passes */
	if (hl_reply_settle(eng, h, job))
		return; /* a journaled reply, tried again later */
	if (h->wsi == NULL) {
		/* Delivered for a host that is gone, or one of a past run. */
		count_figures(h, job);
		hl_http_forget(eng, h);
		hl_job_free(job);
		return;
	}
	if (job->status == 0) {
		eng->rest_errors++;
		hl_logf(eng->log, HL_WARN, "rest %s %s failed error=\"%s\"",
		        h->method, h->path, job->error);
		hl_job_free(job);
		answer_locally(h, 502, "heartline: Discord is unreachable");
		return;
	}
	rewrite_gateway(eng, h, job);
	count_figures(h, job);
	h->answer = job;
	h->out_status = (int)job->status;
	lws_callback_on_writable(h->wsi);
}

/* Writes the status line and headers of the answer. */
static int write_head(struct lws *wsi, hl_http *h, size_t len)
{
	const hl_buf *hdrs = h->answer ? &h->answer->resp_headers : NULL;
	size_t cap = LWS_PRE + 1024 + (hdrs ? hdrs->len * 2 : 0);
	unsigned char *buf = malloc(cap), *p, *end;
	const char *line;
	int rc = -1;

	if (buf == NULL)
		return -1;
	p = buf + LWS_PRE;
	end = buf + cap - 1;
	if (lws_add_http_header_status(wsi, (unsigned)h->out_status, &p, end))
		goto out;
	for (line = hdrs && hdrs->data ? hdrs->data : ""; *line;) {
		const char *eol = strstr(line, "\r\n"), *colon;
		char name[128];
		size_t nlen;

		if (eol == NULL)
			eol = line + strlen(line);
		colon = memchr(line, ':', (size_t)(eol - line));
		nlen = colon ? (size_t)(colon - line) + 1 : 0;
		if (nlen > 1 && nlen < sizeof(name)) {
			const char *v = colon + 1;

			memcpy(name, line, nlen);
			name[nlen] = '\0';
			for (char *c = name; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			while (*v == ' ')
				v++;
			if (!is_hop_header(name) &&
			    strcmp(name, "content-encoding:") != 0 &&
			    lws_add_http_header_by_name(
			            wsi, (const unsigned char *)name,
			            (const unsigned char *)v, (int)(eol - v),
			            &p, end))
				goto out;
		}
		line = *eol ? eol + 2 : eol;
	}
	if (!h->answer &&
	    lws_add_http_header_by_token(
	            wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
	            (const unsigned char *)"application/json", 16, &p, end))
		goto out;
	if (lws_add_http_header_content_length(wsi, len, &p, end) ||
	    lws_finalize_write_http_header(wsi, buf + LWS_PRE, &p, end))
		goto out;
	rc = 0;
out:
	free(buf);
	return rc;
}

/* Sends the answer in chunks; returns 1 when the request is done. */
static int on_writable(struct lws *wsi, hl_http *h)
{
	const char *body = h->answer ? h->answer->resp_body.data : h->out.data;
	size_t len = h->answer ? h->answer->resp_body.len : h->out.len;
	unsigned char *chunk;
	size_t n;
	int final;

	if (h->out_status == 0)
		return 0; /* still waiting for Discord */
	if (!h->headers_sent) {
		if (write_head(wsi, h, len) != 0)
			return -1;
		h->headers_sent = 1;
		if (len > 0) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	n = len - h->sent < WRITE_CHUNK ? len - h->sent : WRITE_CHUNK;
	final = h->sent + n == len;
	if (n > 0) {
		chunk = malloc(LWS_PRE + n);
		if (chunk == NULL)
			return -1;
		memcpy(chunk + LWS_PRE, body + h->sent, n);
		if (lws_write(wsi, chunk + LWS_PRE, n,
		              final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
		    (int)n) {
			free(chunk);
			return -1;
		}
		free(chunk);
		h->sent += n;
	}
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	return 1;
}

int hl_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len)
{
	hl_engine *eng = engine_of(wsi);
	hl_http **slot = user;
	hl_http *h = slot ? *slot : NULL;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (h) {
			/* A new request on a kept-alive connection. */
			h->wsi = NULL;
			*slot = NULL;
		}
		return on_request(wsi, slot, in);
	case LWS_CALLBACK_HTTP_BODY:
		if (h == NULL)
			return -1;
		if (h->body.len + len > BODY_MAX ||
		    hl_buf_append(&h->body, in, len) != 0) {
			answer_locally(h, 413, "heartline: body too large");
			return 0;
		}
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (h && h->out_status == 0)
			submit(eng, h);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		if (h == NULL)
			return -1;
		switch (on_writable(wsi, h)) {
		case 0:
			return 0;
		case 1:
			hl_http_forget(eng, h);
			*slot = NULL;
			return lws_http_transaction_completed(wsi) ? -1 : 0;
		default:
			return -1;
		}
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
	case LWS_CALLBACK_CLOSED_HTTP:
		if (h) {
			h->wsi = NULL;
			/* A journaled reply waiting to go out again goes out
			 * all the same: the host is gone, the user is not. */
			if (h->answer || h->out_status ||
			    (h->parked && h->jid == 0))
				hl_http_forget(eng, h);
			*slot = NULL;
		}
		return 0;
	default:
		return 0;
	}
}
