/*
 * engine.c - the exported ABI: start, stop, reconfigure, status, logs,
 * and the handover of a running engine to another build (detach, attach).
 *
 * These run on the host's thread. Starting builds the configuration, the
 * log, the disk, rest and net threads (the net thread's context already
 * listens when hl_start returns); stopping reverses that. Detaching stops
 * the same way but keeps the listening socket, the network context and
 * the upstream sessions in a handover (handover.h); attaching starts an
 * engine on them instead of on new ones. hl_status waits up to
 * STATUS_WAIT_MS for a fresh snapshot; hl_stop joins the engine's threads
 * after they have closed their connections and saved their checkpoints;
 * hl_detach first lets the front answer what it is relaying. Nothing
 * else waits on more than a mutex held for a copy.
 * XXX: with a state_dir, hl_start reads, rewrites and syncs the journal
 * and reads the checkpoints on the host's thread, and hl_stop waits for
 * the final checkpoints to be synced: on a slow disk the host's loop
 * waits that long.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "handover.h"

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
	free(eng->cfg_text);
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

/* An engine with its configuration and its log, nothing running yet. */
static hl_engine *engine_new(const char *config_json, char *err, size_t errlen)
{
	hl_engine *eng;

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
	eng->cfg_text = strdup(config_json);
	eng->log = hl_log_new(eng->cfg.log_level);
	if (eng->log == NULL || eng->cfg_text == NULL) {
		snprintf(err, errlen, "out of memory");
		engine_free(eng);
		return NULL;
	}
	return eng;
}

/* The net thread on a context of its own, then the front. */
static int start_threads(hl_engine *eng, char *err, size_t errlen)
{
	if (hl_net_start(eng, err, errlen) != 0)
		return -1;
	if (hl_front_run(eng->front) == 0)
		return 0;
	snprintf(err, errlen, "cannot start the local endpoint");
	hl_net_stop(eng);
	hl_net_destroy(eng);
	return -1;
}

/*
 * The front, then the net thread on the handover's context: once that
 * thread has taken the sessions nothing is left that can fail, so a
 * failure leaves the handover as it was.
 */
static int attach_threads(hl_engine *eng, char *err, size_t errlen)
{
	hl_net_borrow(eng);
	if (hl_front_run(eng->front) != 0) {
		snprintf(err, errlen, "cannot start the local endpoint");
		hl_net_unborrow(eng);
		return -1;
	}
	if (hl_net_attach(eng, err, errlen) == 0)
		return 0;
	/* Its connection threads may wake the context until they end. */
	hl_front_stop(eng->front);
	eng->front = NULL;
	hl_net_unborrow(eng);
	return -1;
}

/*
 * Starts the engine's threads: on a port of its own, or on the context
 * and the socket of the handover in eng->taken. On failure the engine
 * is freed; the handover is left as it was.
 */
static int engine_run(hl_engine *eng, char *err, size_t errlen)
{
	hl_handover *ho = eng->taken;

	if (eng->cfg.state_dir) {
		eng->disk = hl_disk_start(eng, err, errlen);
		if (eng->disk == NULL)
			goto fail;
	}
	if (ho)
		eng->front = hl_front_adopt(
		        eng, fcntl(ho->listen_fd, F_DUPFD_CLOEXEC, 0), err,
		        errlen);
	else
		eng->front =
		        hl_front_bind(eng, eng->cfg.listen_port, err, errlen);
	if (eng->front == NULL)
		goto fail;
	eng->rest = hl_rest_start(eng, err, errlen);
	if (eng->rest == NULL)
		goto fail_front;
	if ((ho ? attach_threads(eng, err, errlen)
	        : start_threads(eng, err, errlen)) != 0)
		goto fail_rest;
	hl_logf(eng->log, HL_INFO, "engine started version=%s origin=%s",
	        HL_VERSION, eng->origin);
	return 0;

fail_rest:
	hl_rest_stop(eng->rest);
fail_front:
	hl_front_stop(eng->front);
fail:
	hl_disk_stop(eng->disk);
	eng->taken = NULL;
	engine_free(eng);
	return -1;
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

HL_EXPORT int hl_handover_version(void)
{
	return HL_HANDOVER_VERSION;
}

/* Moves what eng logged, up to its end, into the handover's text. */
static void take_logs(hl_engine *eng, hl_handover *ho)
{
	hl_buf all = { 0 };
	char chunk[16384];
	size_t n;

	while ((n = hl_log_drain(eng->log, chunk, sizeof(chunk))) > 0) {
		if (hl_buf_append(&all, chunk, n) != 0)
			break;
	}
	if (hl_buf_append(&all, "", 1) == 0)
		ho->logs = all.data;
	else
		hl_buf_free(&all);
}

HL_EXPORT hl_handover *hl_detach(hl_engine *eng, char *err, size_t errlen)
{
	hl_handover *ho;

	if (err == NULL)
		errlen = 0;
	if (errlen > 0)
		err[0] = '\0';
	if (eng == NULL) {
		snprintf(err, errlen, "no engine");
		return NULL;
	}
	ho = calloc(1, sizeof(*ho));
	if (ho == NULL || (ho->config = strdup(eng->cfg_text)) == NULL) {
		free(ho);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ho->version = HL_HANDOVER_VERSION;
	ho->size = sizeof(*ho);
	ho->bot_size = sizeof(hl_handover_bot);
	ho->port = eng->port;

	/* As hl_stop, but the socket, the context and the sessions stay. */
	ho->listen_fd = hl_front_release(eng->front);
	eng->front = NULL;
	eng->given = ho;
	hl_net_stop(eng);
	eng->given = NULL;
	hl_disk_stop(eng->disk);
	hl_rest_stop(eng->rest);
	/* The network context is the handover's now. */
	hl_net_unborrow(eng);
	take_logs(eng, ho);
	engine_free(eng);
	return ho;
}

/*
 * Returns 0 when an engine configured with cfg can take ho, and then
 * gives cfg the handover's port unless it names it; else -1, and why says
 * why not.
 */
static int check_handover(const hl_handover *ho, hl_config *cfg, char *why,
                          size_t whylen)
{
	hl_config was;
	const char *key;

	if (ho->version != HL_HANDOVER_VERSION || ho->size != sizeof(*ho) ||
	    ho->bot_size != sizeof(hl_handover_bot)) {
		snprintf(why, whylen,
		         "the running engine hands over state version %d; "
		         "this build takes version %d",
		         ho->version, HL_HANDOVER_VERSION);
		return -1;
	}
	if (cfg->listen_port == 0)
		cfg->listen_port = ho->port;
	memset(&was, 0, sizeof(was));
	if (hl_config_parse(ho->config, &was, why, whylen) != 0)
		return -1;
	was.listen_port = ho->port;
	key = hl_config_fixed_change(&was, cfg);
	hl_config_free(&was);
	if (key) {
		snprintf(why, whylen,
		         "config: %s differs from the running engine's; only a "
		         "new engine takes it",
		         key);
		return -1;
	}
	return 0;
}

/* The records the engine before logged go first in this one's log. */
static void inherit_logs(hl_engine *eng, const char *logs)
{
	while (logs && *logs) {
		const char *eol = strchr(logs, '\n');
		size_t n = eol ? (size_t)(eol - logs) : strlen(logs);

		hl_log_put_record(eng->log, logs, n);
		logs += n + (eol != NULL);
	}
}

/* hl_start, and with a handover hl_attach. */
static hl_engine *engine_start(const char *config_json, hl_handover *ho,
                               char *err, size_t errlen)
{
	char scratch[256];
	hl_engine *eng;

	if (err == NULL || errlen == 0) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	err[0] = '\0';
	eng = engine_new(config_json, err, errlen);
	if (eng == NULL)
		return NULL;
	if (ho) {
		if (check_handover(ho, &eng->cfg, err, errlen) != 0) {
			engine_free(eng);
			return NULL;
		}
		inherit_logs(eng, ho->logs);
		eng->taken = ho;
	}
	if (engine_run(eng, err, errlen) != 0)
		return NULL;
	return eng;
}

HL_EXPORT hl_engine *hl_start(const char *config_json, char *err, size_t errlen)
{
	return engine_start(config_json, NULL, err, errlen);
}

HL_EXPORT void hl_handover_close(hl_handover *ho)
{
	if (ho == NULL || ho->version != HL_HANDOVER_VERSION ||
	    ho->size != sizeof(*ho))
		return;
	hl_net_discard(ho);
	hl_handover_save(ho);
	hl_handover_free(ho);
}

HL_EXPORT hl_engine *hl_attach(const char *config_json, hl_handover *ho,
                               char *err, size_t errlen)
{
	if (ho == NULL) {
		if (err && errlen > 0)
			snprintf(err, errlen, "no handover");
		return NULL;
	}
	return engine_start(config_json, ho, err, errlen);
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
