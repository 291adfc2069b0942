/*
 * rest.c - the rest thread: every HTTP request the engine makes upstream.
 *
 * The net thread hands over jobs (a downstream REST call to forward, a
 * gateway lookup before a bot connects) through a mailbox and wakes this
 * thread; it runs them all at once on one curl multi handle, which keeps
 * upstream connections alive between requests. Finished jobs go back
 * through the engine's results mailbox, followed by a wake-up of the net
 * thread. Host-name lookups for the gateway are done here too, so the net
 * thread never waits on DNS.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <curl/curl.h>

#include "internal.h"

#define REST_TIMEOUT_MS 30000L

struct hl_rest {
	hl_engine *eng;
	CURLM *multi;
	pthread_t thread;
	hl_mailbox inbox;
	hl_job *active; /* jobs with a transfer on the multi handle */
};

void hl_mailbox_init(hl_mailbox *mb)
{
	pthread_mutex_init(&mb->lock, NULL);
	mb->head = mb->tail = NULL;
}

void hl_mailbox_destroy(hl_mailbox *mb)
{
	hl_job *job = hl_mailbox_take_all(mb);

	while (job) {
		hl_job *next = job->next;

		hl_job_free(job);
		job = next;
	}
	pthread_mutex_destroy(&mb->lock);
}

void hl_mailbox_put(hl_mailbox *mb, hl_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&mb->lock);
	if (mb->tail)
		mb->tail->next = job;
	else
		mb->head = job;
	mb->tail = job;
	pthread_mutex_unlock(&mb->lock);
}

hl_job *hl_mailbox_take_all(hl_mailbox *mb)
{
	hl_job *all;

	pthread_mutex_lock(&mb->lock);
	all = mb->head;
	mb->head = mb->tail = NULL;
	pthread_mutex_unlock(&mb->lock);
	return all;
}

void hl_job_free(hl_job *job)
{
	if (job == NULL)
		return;
	free(job->method);
	free(job->url);
	curl_slist_free_all(job->headers);
	hl_buf_free(&job->body);
	if (job->token) {
		memset(job->token, 0, strlen(job->token));
		free(job->token);
	}
	free(job->connect_url);
	hl_buf_free(&job->resp_headers);
	hl_buf_free(&job->resp_body);
	free(job->gateway_url);
	free(job->file);
	if (job->entry)
		hl_jentry_free(job->entry);
	free(job);
}

/* Headers of a request the engine makes for a bot on its own. */
struct curl_slist *hl_auth_headers(const char *token)
{
	struct curl_slist *list = NULL, *next;
	hl_buf auth = { 0 };

	if (hl_buf_appendf(&auth, "Authorization: Bot %s", token) != 0)
		return NULL;
	list = curl_slist_append(NULL, auth.data);
	memset(auth.data, 0, auth.len);
	hl_buf_free(&auth);
	next = list ? curl_slist_append(list, "User-Agent: DiscordBot "
	                                      "(heartline, " HL_VERSION ")")
	            : NULL;
	if (next == NULL)
		curl_slist_free_all(list);
	return next;
}

static void finish(hl_rest *rest, hl_job *job)
{
	hl_mailbox_put(&rest->eng->results, job);
	hl_net_wake(rest->eng);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	hl_job *job = arg;

	return hl_buf_append(&job->resp_body, p, size * n) == 0 ? size * n : 0;
}

/* Keeps the header lines of the final response only. */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	hl_job *job = arg;
	size_t len = size * n;

	if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		job->resp_headers.len = 0;
		return len;
	}
	if (len <= 2 || memchr(p, ':', len) == NULL)
		return len;
	return hl_buf_append(&job->resp_headers, p, len) == 0 ? len : 0;
}

static int add_transfer(hl_rest *rest, hl_job *job)
{
	const hl_config *cfg = &rest->eng->cfg;
	CURL *h = curl_easy_init();

	if (h == NULL)
		return -1;
	curl_easy_setopt(h, CURLOPT_URL, job->url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, job->method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, job->headers);
	if (job->body.len > 0 || strcmp(job->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS,
		                 job->body.data ? job->body.data : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)job->body.len);
	}
	if (strcmp(job->method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, job);
	curl_easy_setopt(h, CURLOPT_PRIVATE, job);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REST_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (cfg->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
	if (cfg->tls_groups)
		curl_easy_setopt(h, CURLOPT_SSL_EC_CURVES, cfg->tls_groups);
	if (curl_multi_add_handle(rest->multi, h) != CURLM_OK) {
		curl_easy_cleanup(h);
		return -1;
	}
	job->easy = h;
	job->next = rest->active;
	rest->active = job;
	return 0;
}

static void remove_transfer(hl_rest *rest, hl_job *job)
{
	hl_job **p;

	for (p = &rest->active; *p; p = &(*p)->next) {
		if (*p == job) {
			*p = job->next;
			break;
		}
	}
	job->next = NULL;
	curl_multi_remove_handle(rest->multi, job->easy);
	curl_easy_cleanup(job->easy);
	job->easy = NULL;
}

/*
 * Resolves the host of url to a numeric address, so that the net thread
 * can connect without a lookup of its own.
 */
static int resolve(const char *url, char *out, size_t outlen, char *err,
                   size_t errlen)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	hl_url u;
	int rc;

	if (hl_url_parse(url, &u) != 0) {
		snprintf(err, errlen, "bad gateway URL");
		return -1;
	}
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(u.host, NULL, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, errlen, "cannot resolve %.120s: %s", u.host,
		         gai_strerror(rc));
		return -1;
	}
	if (res->ai_family == AF_INET6)
		inet_ntop(AF_INET6,
		          &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr,
		          out, (socklen_t)outlen);
	else
		inet_ntop(AF_INET,
		          &((struct sockaddr_in *)res->ai_addr)->sin_addr, out,
		          (socklen_t)outlen);
	freeaddrinfo(res);
	return 0;
}

/* The gateway lookup, after its /gateway/bot call (if any) finished. */
static void gateway_finish(hl_rest *rest, hl_job *job)
{
	const char *target = job->connect_url;

	if (job->lookup && job->error[0] == '\0') {
		cJSON *root = NULL, *url, *ssl, *mc, *rem, *reset, *total;

		if (job->status == 200)
			root = cJSON_ParseWithLength(job->resp_body.data,
			                             job->resp_body.len);
		url = cJSON_GetObjectItemCaseSensitive(root, "url");
		ssl = cJSON_GetObjectItemCaseSensitive(root,
		                                       "session_start_limit");
		mc = cJSON_GetObjectItemCaseSensitive(ssl, "max_concurrency");
		rem = cJSON_GetObjectItemCaseSensitive(ssl, "remaining");
		reset = cJSON_GetObjectItemCaseSensitive(ssl, "reset_after");
		total = cJSON_GetObjectItemCaseSensitive(ssl, "total");
		if (cJSON_IsNumber(rem) && cJSON_IsNumber(reset)) {
			job->starts_remaining = rem->valueint;
			job->starts_reset_ms = (int64_t)reset->valuedouble;
			job->starts_total =
			        cJSON_IsNumber(total) ? total->valueint : 0;
			job->has_starts = 1;
		}
		if (cJSON_IsString(url)) {
			job->gateway_url = strdup(url->valuestring);
			if (target == NULL)
				target = job->gateway_url;
		} else {
			snprintf(job->error, sizeof(job->error),
			         "GET /gateway/bot answered %ld", job->status);
		}
		if (cJSON_IsNumber(mc))
			job->max_concurrency = mc->valueint;
		cJSON_Delete(root);
	}
	if (target != NULL)
		resolve(target, job->address, sizeof(job->address), job->error,
		        sizeof(job->error));
	finish(rest, job);
}

static void start_job(hl_rest *rest, hl_job *job)
{
	if (job->kind == HL_JOB_GATEWAY && !job->lookup) {
		gateway_finish(rest, job);
		return;
	}
	if (job->kind == HL_JOB_GATEWAY) {
		job->method = strdup("GET");
		job->headers = hl_auth_headers(job->token);
		job->url = malloc(strlen(rest->eng->cfg.api_base) + 16);
		if (job->url)
			sprintf(job->url, "%s/gateway/bot",
			        rest->eng->cfg.api_base);
	}
	if (job->method == NULL || job->url == NULL ||
	    add_transfer(rest, job) != 0) {
		snprintf(job->error, sizeof(job->error), "out of memory");
		job->status = 0;
		if (job->kind == HL_JOB_GATEWAY)
			gateway_finish(rest, job);
		else
			finish(rest, job);
	}
}

static void collect_done(hl_rest *rest)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(rest->multi, &left)) != NULL) {
		hl_job *job = NULL;
		CURL *h = m->easy_handle;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&job);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &job->status);
		if (m->data.result != CURLE_OK) {
			snprintf(job->error, sizeof(job->error), "%s",
			         curl_easy_strerror(m->data.result));
			job->status = 0;
		}
		remove_transfer(rest, job);
		if (job->kind == HL_JOB_GATEWAY)
			gateway_finish(rest, job);
		else
			finish(rest, job);
	}
}

static void *rest_main(void *arg)
{
	hl_rest *rest = arg;
	int quit = 0;

	while (!quit) {
		hl_job *job = hl_mailbox_take_all(&rest->inbox);
		int running = 0;

		while (job) {
			hl_job *next = job->next;

			if (job->kind == HL_JOB_QUIT) {
				quit = 1;
				hl_job_free(job);
			} else {
				start_job(rest, job);
			}
			job = next;
		}
		curl_multi_perform(rest->multi, &running);
		collect_done(rest);
		if (!quit)
			curl_multi_poll(rest->multi, NULL, 0, 1000, NULL);
	}
	return NULL;
}

hl_rest *hl_rest_start(hl_engine *eng, char *err, size_t errlen)
{
	hl_rest *rest = calloc(1, sizeof(*rest));

	if (rest == NULL)
		goto fail;
	rest->eng = eng;
	hl_mailbox_init(&rest->inbox);
	rest->multi = curl_multi_init();
	if (rest->multi == NULL)
		goto fail_mailbox;
	curl_multi_setopt(rest->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
	if (pthread_create(&rest->thread, NULL, rest_main, rest) != 0)
		goto fail_multi;
	return rest;

fail_multi:
	curl_multi_cleanup(rest->multi);
fail_mailbox:
	hl_mailbox_destroy(&rest->inbox);
	free(rest);
fail:
	snprintf(err, errlen, "cannot start the rest thread");
	return NULL;
}

void hl_rest_submit(hl_rest *rest, hl_job *job)
{
	hl_mailbox_put(&rest->inbox, job);
	curl_multi_wakeup(rest->multi);
}

/* Stops the thread; transfers still running are abandoned and freed. */
void hl_rest_stop(hl_rest *rest)
{
	hl_job *quit;

	if (rest == NULL)
		return;
	quit = calloc(1, sizeof(*quit));
	if (quit) {
		quit->kind = HL_JOB_QUIT;
		hl_rest_submit(rest, quit);
	}
	pthread_join(rest->thread, NULL);

	while (rest->active) {
		hl_job *job = rest->active;

		remove_transfer(rest, job);
		hl_job_free(job);
	}
	curl_multi_cleanup(rest->multi);
	hl_mailbox_destroy(&rest->inbox);
	free(rest);
}
