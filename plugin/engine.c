/*
 * engine.c - the exported ABI: start, stop, reconfigure, status, logs.
 *
 * These run on the host's thread. Starting builds the configuration, the
 * log, the disk, rest and net threads (the net thread's context already
 * listens when hl_start returns); stopping reverses that. hl_status
 * waits up to STATUS_WAIT_MS for a fresh snapshot; hl_stop joins the
 * engine's threads after they have closed their connections and saved
 * their checkpoints. Nothing else waits on more than a mutex held for a
 * copy.
 * XXX: with a state_dir, hl_start reads, rewrites and syncs the journal
 * and reads the checkpoints on the host's thread, and hl_stop waits for
 * the final checkpoints to be synced: on a slow disk the host's loop
 * waits that long.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "internal.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_ok;

static void global_init(void)
{
	global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

HL_EXPORT int hl_abi_version(void)
{
	return HL_ABI_VERSION;
}

HL_EXPORT const char *hl_version(void)
{
	return HL_VERSION;
}

static void engine_free(hl_engine *eng)
{
	hl_bot *bot;
	hl_down *down;

	hl_typing_free_all(eng);
	hl_limiters_free(eng);
	while ((bot = eng->bots) != NULL) {
		eng->bots = bot->next;
		hl_bot_free(bot);
	}
	while ((down = eng->downs) != NULL) {
		eng->downs = down->next;
		hl_buf_free(&down->rx);
		hl_msgq_clear(&down->tx);
		free(down);
	}
	free(eng->tx_join);
	free(eng->up_by_fd);
	while (eng->https) {
		hl_http *h = eng->https;

		eng->https = h->next;
		hl_timer_stop(&h->wait);
		hl_job_free(h->parked);
		hl_job_free(h->held);
		free(h->path);
		curl_slist_free_all(h->headers);
		hl_buf_free(&h->body);
		hl_job_free(h->answer);
		hl_buf_free(&h->out);
		free(h);
	}
	while (eng->nadopt > 0)
		close(eng->adopt_fds[--eng->nadopt]);
	pthread_mutex_destroy(&eng->adopt_lock);
	hl_mailbox_destroy(&eng->results);
	hl_jscan_free(&eng->recovered);
	hl_reply_free_edits(eng);
	cJSON_Delete(eng->saved);
	if (eng->reconf) {
		hl_config_free(eng->reconf);
		free(eng->reconf);
	}
	pthread_mutex_destroy(&eng->reconf_lock);
	pthread_cond_destroy(&eng->status_built);
	pthread_mutex_destroy(&eng->status_lock);
	free(eng->status_json);
	hl_log_free(eng->log);
	hl_config_free(&eng->cfg);
	if (eng->loop)
		ev_loop_destroy(eng->loop);
	free(eng);
}

/* How long hl_status waits for the net thread's fresh snapshot. */
#define STATUS_WAIT_MS 20
#define STATUS_FRESH_MS 250

static void init_status_cond(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

HL_EXPORT hl_engine *hl_start(const char *config_json, char *err, size_t errlen)
{
	char scratch[256];
	hl_engine *eng;

	if (err == NULL || errlen == 0) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	err[0] = '\0';
	pthread_once(&global_once, global_init);
	if (!global_ok) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return NULL;
	}
	eng = calloc(1, sizeof(*eng));
	if (eng == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (hl_config_parse(config_json, &eng->cfg, err, errlen) != 0) {
		free(eng);
		return NULL;
	}
	eng->started_ms = hl_mono_ms();
	hl_mailbox_init(&eng->results);
	pthread_mutex_init(&eng->status_lock, NULL);
	init_status_cond(&eng->status_built);
	pthread_mutex_init(&eng->adopt_lock, NULL);
	pthread_mutex_init(&eng->reconf_lock, NULL);
	eng->log = hl_log_new(eng->cfg.log_level);
	if (eng->log == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (eng->cfg.state_dir) {
		eng->disk = hl_disk_start(eng, err, errlen);
		if (eng->disk == NULL)
			goto fail;
	}
	eng->front = hl_front_bind(eng, eng->cfg.listen_port, err, errlen);
	if (eng->front == NULL)
		goto fail;
	eng->rest = hl_rest_start(eng, err, errlen);
	if (eng->rest == NULL)
		goto fail_front;
	if (hl_net_start(eng, err, errlen) != 0)
		goto fail_rest;
	if (hl_front_run(eng->front) != 0) {
		snprintf(err, errlen, "cannot start the local endpoint");
		goto fail_net;
	}
	hl_logf(eng->log, HL_INFO, "engine started version=%s origin=%s",
	        HL_VERSION, eng->origin);
	return eng;

fail_net:
	hl_net_stop(eng);
	hl_rest_stop(eng->rest);
	hl_net_destroy(eng);
	goto fail_front;
fail_rest:
	hl_rest_stop(eng->rest);
fail_front:
	hl_front_stop(eng->front);
fail:
	hl_disk_stop(eng->disk);
	engine_free(eng);
	return NULL;
}

HL_EXPORT void hl_stop(hl_engine *eng)
{
	if (eng == NULL)
		return;
	/*
	 * The front hands sockets to the net thread and the rest thread
	 * wakes its context, so the front goes first and the context last.
	 */
	hl_front_stop(eng->front);
	hl_net_stop(eng);
	hl_disk_stop(eng->disk);
	hl_rest_stop(eng->rest);
	hl_net_destroy(eng);
	engine_free(eng);
}

HL_EXPORT int hl_reconfigure(hl_engine *eng, const char *config_json, char *err,
                             size_t errlen)
{
	hl_config *cfg, *old;
	const char *fixed;

	if (err == NULL)
		errlen = 0;
	if (errlen > 0)
		err[0] = '\0';
	if (eng == NULL || config_json == NULL) {
		snprintf(err, errlen, "no engine or no configuration");
		return -1;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (hl_config_parse(config_json, cfg, err, errlen) != 0) {
		free(cfg);
		return -1;
	}

	/* Any port (0) or the one in use is no change of port. */
	if (cfg->listen_port == 0 || cfg->listen_port == eng->port)
		cfg->listen_port = eng->cfg.listen_port;

	/* The fixed keys are never written after hl_start: safe to read. */
	fixed = hl_config_fixed_change(&eng->cfg, cfg);
	if (fixed) {
		snprintf(err, errlen,
		         "config: %s cannot change in a running engine", fixed);
		hl_config_free(cfg);
		free(cfg);
		return 1;
	}

	hl_log_set_level(eng->log, cfg->log_level);
	pthread_mutex_lock(&eng->reconf_lock);
	old = eng->reconf;
	eng->reconf = cfg;
	pthread_mutex_unlock(&eng->reconf_lock);
	if (old) {
		hl_config_free(old);
		free(old);
	}
	hl_net_wake(eng);
	return 0;
}

HL_EXPORT size_t hl_status(hl_engine *eng, char *buf, size_t buflen)
{
	struct timespec until;
	uint64_t gen;
	size_t len;
	int asked;

	if (eng == NULL)
		return 0;

	/* Ask the net thread for a fresh snapshot; a busy one gets a few
	 * milliseconds, then the last snapshot is what the host gets. */
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += STATUS_WAIT_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&eng->status_lock);
	gen = eng->status_gen;
	/* A snapshot this recent is fresh enough, and stays the same for a
	 * caller that asks again with a buffer of the size it was told. */
	asked = hl_mono_ms() - eng->status_built_ms >= STATUS_FRESH_MS;
	if (asked) {
		eng->status_wanted = 1;
		hl_net_wake(eng);
	}
	while (asked && eng->status_gen == gen &&
	       pthread_cond_timedwait(&eng->status_built, &eng->status_lock,
	                              &until) == 0)
		;
	len = eng->status_json ? strlen(eng->status_json) : 2;
	if (buf && buflen > 0) {
		const char *s = eng->status_json ? eng->status_json : "{}";
		size_t n = len < buflen ? len : buflen - 1;

		memcpy(buf, s, n);
		buf[n] = '\0';
	}
	pthread_mutex_unlock(&eng->status_lock);
	return len;
}

HL_EXPORT size_t hl_logs_drain(hl_engine *eng, char *buf, size_t buflen)
{
	if (eng == NULL || buf == NULL)
		return 0;
	return hl_log_drain(eng->log, buf, buflen);
}
