/*
 * status.c - the JSON status snapshot that hl_status() hands the host.
 *
 * The net thread builds it from the state only it may read, when the
 * host asks (hl_status wakes it and waits a few milliseconds for it), on
 * the local status endpoint, and every few seconds; it swaps it in under
 * the status lock, and the host copies it out under the same lock.
 * Neither side holds the lock for more than a copy. Building costs time
 * that heartbeats may be waiting for (milliseconds with a thousand
 * bots), so it is not done when nobody looks.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static cJSON *bot_status(const hl_bot *bot)
{
	cJSON *o = cJSON_CreateObject(), *shard;

	cJSON_AddStringToObject(o, "id", bot->user_id);
	cJSON_AddStringToObject(o, "token_hash", bot->token_hash);
	shard = cJSON_AddArrayToObject(o, "shard");
	cJSON_AddItemToArray(shard, cJSON_CreateNumber(bot->shard[0]));
	cJSON_AddItemToArray(shard, cJSON_CreateNumber(bot->shard[1]));
	cJSON_AddStringToObject(o, "state", hl_up_state_name(bot));
	cJSON_AddBoolToObject(o, "downstream", bot->down != NULL);
	cJSON_AddNumberToObject(o, "heartbeat_rtt_ms", (double)bot->hb_rtt_ms);
	cJSON_AddNumberToObject(o, "heartbeat_late_ms_max",
	                        (double)bot->hb_late_max_ms);
	cJSON_AddNumberToObject(o, "drops", bot->drops);
	cJSON_AddNumberToObject(o, "identifies", bot->identifies);
	cJSON_AddNumberToObject(o, "resumes", bot->resumes);
	cJSON_AddNumberToObject(o, "dispatches", (double)bot->dispatches);
	cJSON_AddNumberToObject(o, "typing", bot->typing);
	cJSON_AddNumberToObject(o, "replies", bot->replies);
	hl_limit_status(bot->eng, bot->token, o);
	if (bot->starts_remaining >= 0) {
		cJSON *b = cJSON_AddObjectToObject(o, "identify_budget");
		int64_t reset = bot->starts_reset_at - hl_mono_ms();

		cJSON_AddNumberToObject(b, "remaining", bot->starts_remaining);
		cJSON_AddNumberToObject(b, "total", bot->starts_total);
		cJSON_AddNumberToObject(b, "reset_in_ms",
		                        (double)(reset > 0 ? reset : 0));
	}
	if (bot->fatal_code)
		cJSON_AddNumberToObject(o, "fatal_code", bot->fatal_code);
	else
		cJSON_AddNullToObject(o, "fatal_code");
	return o;
}

void hl_status_refresh(hl_engine *eng)
{
	cJSON *root = cJSON_CreateObject(), *bots, *rest;
	const hl_bot *bot;
	char *text, *old;

	if (root == NULL)
		return;
	cJSON_AddStringToObject(root, "version", HL_VERSION);
	cJSON_AddNumberToObject(root, "abi", HL_ABI_VERSION);
	cJSON_AddStringToObject(root, "origin", eng->origin);
	cJSON_AddNumberToObject(root, "port", eng->port);
	cJSON_AddNumberToObject(root, "uptime_ms",
	                        (double)(hl_mono_ms() - eng->started_ms));
	bots = cJSON_AddArrayToObject(root, "bots");
	for (bot = eng->bots; bot; bot = bot->next)
		cJSON_AddItemToArray(bots, bot_status(bot));
	rest = cJSON_AddObjectToObject(root, "rest");
	cJSON_AddNumberToObject(rest, "requests", (double)eng->rest_requests);
	cJSON_AddNumberToObject(rest, "in_flight", eng->rest_in_flight);
	cJSON_AddNumberToObject(rest, "errors", (double)eng->rest_errors);
	cJSON_AddNumberToObject(rest, "invalid_10min", hl_invalid_recent(eng));
	text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (text == NULL)
		return;

	pthread_mutex_lock(&eng->status_lock);
	old = eng->status_json;
	eng->status_json = text;
	eng->status_gen++;
	eng->status_built_ms = hl_mono_ms();
	pthread_cond_broadcast(&eng->status_built);
	pthread_mutex_unlock(&eng->status_lock);
	free(old);
}
