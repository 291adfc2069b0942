/*
 * handover.c - a bot on its way from one engine to the next in the same
 * process (handover.h says what travels and why), and the handover's end.
 *
 * Net thread: the engine that is detached packs its bots as its thread's
 * last act, and the engine that attaches unpacks them as its thread's
 * first, so that no other thread touches a connection in between.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handover.h"

static void wipe_free(char *secret)
{
	if (secret == NULL)
		return;
	memset(secret, 0, strlen(secret));
	free(secret);
}

/* The fields a bot and its handover share, by name: what the coordinator
 * and the figures know of the bot, and the state of a live connection. */
#define BOT_FIELDS(X)                                                          \
	X(last_identify_ms), X(max_concurrency), X(starts_remaining),          \
	        X(starts_total), X(starts_reset_at), X(attempts),              \
	        X(hb_rtt_ms), X(hb_late_max_ms), X(drops), X(identifies),      \
	        X(resumes), X(dispatches), X(replies)
#define LIVE_FIELDS(X)                                                         \
	X(heartbeat_ms), X(hb_acked), X(hb_sent_ms), X(hb_due_ms),             \
	        X(ready_since_ms), X(nsends)
#define TO_HANDOVER(f) hb->f = bot->f
#define TO_BOT(f) bot->f = hb->f

/*
 * Moves what the next engine needs of bot into hb and lets go of its
 * connection: kept when it carries a READY session, else cut.
 */
void hl_handover_pack(hl_bot *bot, hl_handover_bot *hb)
{
	hb->token = strdup(bot->token);
	hb->shard[0] = bot->shard[0];
	hb->shard[1] = bot->shard[1];
	hb->identify = cJSON_PrintUnformatted(bot->identify);
	hb->fatal_code = bot->up_state == UP_FATAL ? bot->fatal_code : 0;
	hb->gateway_url = bot->gateway_url;
	bot->gateway_url = NULL;
	BOT_FIELDS(TO_HANDOVER);

	/* A session still being restored has not given the host what
	 * Discord replayed so far: the next engine asks for it again. */
	if (bot->restoring)
		bot->up_seq = bot->saved_seq;
	if (bot->session_id[0] && bot->resume_url && bot->ready_d)
		hb->checkpoint = hl_session_snapshot(bot, SIZE_MAX);
	if (bot->up_state == UP_WAITING || bot->up_state == UP_BLOCKED)
		hb->retry_in_ms = hl_timer_left(&bot->retry_timer);
	hb->wsi = hl_up_release(bot, hb->token && hb->identify &&
	                                     hb->checkpoint && !bot->restoring);
	if (hb->wsi == NULL)
		return;

	LIVE_FIELDS(TO_HANDOVER);
	hb->up_rx = bot->up_rx;
	memset(&bot->up_rx, 0, sizeof(bot->up_rx));
	hb->up_tx = bot->up_tx;
	memset(&bot->up_tx, 0, sizeof(bot->up_tx));
	memcpy(hb->sends, bot->sends, sizeof(hb->sends));
}

static void cut(struct lws *wsi)
{
	if (wsi)
		lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND,
		                LWS_TO_KILL_SYNC);
}

/*
 * Makes the bot hb describes. Returns 1 when it goes on on its live
 * connection, 0 when it connects again (RESUMEing its session when it
 * has one), -1 when it could not be made (no memory), its connection cut.
 */
int hl_handover_unpack(hl_engine *eng, hl_handover_bot *hb)
{
	cJSON *identify = hb->identify ? cJSON_Parse(hb->identify) : NULL;
	hl_bot *bot = NULL;

	if (hb->token && identify)
		bot = hl_session_adopt(eng, hb->token, hb->shard, identify,
		                       hb->checkpoint, hb->wsi != NULL);
	else
		cJSON_Delete(identify);
	if (bot == NULL) {
		cut(hb->wsi);
		hb->wsi = NULL;
		return -1;
	}
	BOT_FIELDS(TO_BOT);
	bot->gateway_url = hb->gateway_url;
	hb->gateway_url = NULL;
	if (hb->fatal_code) {
		bot->up_state = UP_FATAL;
		bot->fatal_code = hb->fatal_code;
		cut(hb->wsi);
		hb->wsi = NULL;
		return 0;
	}
	hl_reply_resend(eng, bot->token);
	if (hb->wsi == NULL || !bot->session_id[0]) {
		cut(hb->wsi);
		hb->wsi = NULL;
		if (hb->retry_in_ms > 0)
			hl_up_start_after(bot, hb->retry_in_ms);
		else
			hl_up_start(bot);
		return 0;
	}

	LIVE_FIELDS(TO_BOT);
	bot->up_rx = hb->up_rx;
	memset(&hb->up_rx, 0, sizeof(hb->up_rx));
	bot->up_tx = hb->up_tx;
	memset(&hb->up_tx, 0, sizeof(hb->up_tx));
	memcpy(bot->sends, hb->sends, sizeof(bot->sends));
	hl_up_adopt(bot, hb->wsi);
	hb->wsi = NULL;
	return 1;
}

/*
 * Saves the sessions of a handover nobody took under its state directory,
 * each as its final checkpoint, so that a later engine RESUMEs them and
 * replays what the host had not confirmed. Host thread.
 */
void hl_handover_save(hl_handover *ho)
{
	char err[256], name[160];
	hl_config cfg;
	hl_job job;
	int i, dirfd = -1;

	memset(&cfg, 0, sizeof(cfg));
	if (hl_config_parse(ho->config, &cfg, err, sizeof(err)) == 0 &&
	    cfg.state_dir)
		dirfd = open(cfg.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (i = 0; dirfd >= 0 && i < ho->nbots; i++) {
		hl_handover_bot *hb = &ho->bots[i];

		if (hb->token == NULL || hb->checkpoint == NULL)
			continue;
		hl_session_file(hb->token, hb->shard, "json", name,
		                sizeof(name));
		memset(&job, 0, sizeof(job));
		job.file = name;
		job.body.data = hb->checkpoint;
		job.body.len = strlen(hb->checkpoint);
		hl_session_write(dirfd, &job);
	}
	if (dirfd >= 0)
		close(dirfd);
	hl_config_free(&cfg);
}

/* Frees a handover and all it still holds; a connection in it is cut. */
void hl_handover_free(hl_handover *ho)
{
	int i;

	if (ho == NULL)
		return;
	for (i = 0; i < ho->nbots; i++) {
		hl_handover_bot *hb = &ho->bots[i];

		cut(hb->wsi);
		wipe_free(hb->token);
		wipe_free(hb->identify);
		free(hb->checkpoint);
		free(hb->gateway_url);
		hl_buf_free(&hb->up_rx);
		hl_msgq_clear(&hb->up_tx);
	}
	free(ho->bots);
	free(ho->config);
	free(ho->logs);
	if (ho->listen_fd >= 0)
		close(ho->listen_fd);
	free(ho);
}
