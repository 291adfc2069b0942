/*
 * session.c - upstream sessions that outlive the process hosting them.
 *
 * Each upstream session's id, sequence and resume URL, with the READY and
 * the guild snapshots a fresh host needs, are checkpointed to
 * STATE_DIR/session-KEY-SHARD-COUNT.json, KEY being the hex SHA-256 of
 * the bot's token (never the token); where the session has got to since
 * (its sequence and the host's) goes to the small .mark file beside it,
 * which a load applies to the snapshot. When a restarted engine sees the
 * host IDENTIFY with that token and shard, the bot starts from the
 * checkpoint: it RESUMEs upstream instead of IDENTIFYing, and the host
 * gets a READY and the guilds from the checkpoint once Discord confirms
 * the session, then the events Discord replays. If Discord refuses, the
 * bot IDENTIFYs and the host sees an ordinary start.
 *
 * A host that outlived the engine (a new build of the library taking
 * over in the same process) RESUMEs instead: the checkpoint also holds
 * the downstream session id and sequence, and the host's IDENTIFY less
 * its token, so that RESUME is taken and only what comes after it is
 * sent. The final checkpoint of a stopping engine adds the dispatches
 * the host has not confirmed by a heartbeat, as they were sent, since
 * some may still have been queued for it when the engine stopped; the
 * next engine replays those after the host's sequence.
 *
 * Threads: hl_sessions_load runs on the host's thread inside hl_start,
 * before the net thread exists; hl_session_write runs on the disk
 * thread; everything else runs on the net thread, which builds the
 * snapshot text and hands it to the disk thread for the crash-safe write
 * (temp file, fsync, rename, fsync of the directory).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define FORMAT_VERSION 1
#define SAVE_EVERY_MS 1000
#define REFRESH_MS 60000
/* The most guild changes a mark carries before the snapshot is saved
 * whole instead. */
#define MARK_EVENTS_MAX (64 * 1024)
/* Discord keeps a session resumable for minutes, not hours; an older
 * checkpoint is not worth a RESUME that will be refused. */
#define MAX_AGE_MS (10 * 60 * 1000)
#define MAX_FILE_BYTES (64 << 20)
/* The most of a bot's unconfirmed dispatches a final checkpoint keeps. */
#define MAX_TAIL_BYTES ((size_t)4 << 20)

/* ext is "json" for the snapshot, "mark" for the position in it. */
static void file_name(const char *key, const int shard[2], const char *ext,
                      char *out, size_t outlen)
{
	snprintf(out, outlen, "session-%s-%d-%d.%s", key, shard[0], shard[1],
	         ext);
}

void hl_session_file(const char *token, const int shard[2], const char *ext,
                     char *out, size_t outlen)
{
	char key[65];

	hl_token_key(token, key);
	file_name(key, shard, ext, out, outlen);
	memset(key, 0, sizeof(key));
}

/* ---- loading (host thread, at start) ---------------------------------- */

static char *read_small_file(int dirfd, const char *name, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	ssize_t n;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0 || st.st_size <= 0 ||
	    st.st_size > MAX_FILE_BYTES)
		goto out;
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		goto out;
	n = read(fd, buf, (size_t)st.st_size);
	if (n != st.st_size) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
	*len = (size_t)n;
out:
	close(fd);
	return buf;
}

static const char *str_of(cJSON *c, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(c, name)->valuestring;
}

static int is_gateway_url(const char *text)
{
	hl_url u;

	return (strncmp(text, "wss://", 6) == 0 ||
	        strncmp(text, "ws://", 5) == 0) &&
	       hl_url_parse(text, &u) == 0;
}

/* A checkpoint that has every field of the current format, or NULL. */
static cJSON *parse_checkpoint(const char *text, size_t len)
{
	cJSON *c = cJSON_ParseWithLength(text, len);
	cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "v");
	cJSON *key = cJSON_GetObjectItemCaseSensitive(c, "key");
	cJSON *shard = cJSON_GetObjectItemCaseSensitive(c, "shard");

	if (!cJSON_IsNumber(v) || v->valueint != FORMAT_VERSION ||
	    !cJSON_IsString(key) || strlen(key->valuestring) != 64 ||
	    !cJSON_IsArray(shard) || cJSON_GetArraySize(shard) != 2 ||
	    !cJSON_IsString(
	            cJSON_GetObjectItemCaseSensitive(c, "session_id")) ||
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "seq")) ||
	    !cJSON_IsString(
	            cJSON_GetObjectItemCaseSensitive(c, "resume_url")) ||
	    !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "saved_ms")) ||
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "ready")) ||
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "guilds")) ||
	    !is_gateway_url(str_of(c, "resume_url"))) {
		cJSON_Delete(c);
		return NULL;
	}
	return c;
}

static int is_named(const char *name, const char *ext)
{
	size_t n = strlen(name), e = strlen(ext);

	return strncmp(name, "session-", 8) == 0 && n > e &&
	       strcmp(name + n - e, ext) == 0;
}

static const char *string_or_empty(cJSON *o, const char *name)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsString(v) ? v->valuestring : "";
}

/*
 * Moves the snapshot c (of file `name`) on to where its mark file says
 * the session went since: a mark written after this snapshot names it,
 * and carries the guild changes since, folded in here. The dispatches a
 * final snapshot kept for the host then no longer line up with its
 * sequence, and go.
 */
static void apply_mark(int dirfd, const char *name, cJSON *c)
{
	char mark_name[160];
	size_t len = 0;
	char *text;
	const char *snap = string_or_empty(c, "snap");
	cJSON *m, *v, *seq, *ds_seq, *at, *e;

	snprintf(mark_name, sizeof(mark_name), "%.*s.mark",
	         (int)(strlen(name) - 5), name);
	text = read_small_file(dirfd, mark_name, &len);
	m = text ? cJSON_ParseWithLength(text, len) : NULL;
	free(text);
	v = cJSON_GetObjectItemCaseSensitive(m, "v");
	seq = cJSON_GetObjectItemCaseSensitive(m, "seq");
	ds_seq = cJSON_GetObjectItemCaseSensitive(m, "ds_seq");
	at = cJSON_GetObjectItemCaseSensitive(m, "saved_ms");
	if (!cJSON_IsNumber(v) || v->valueint != FORMAT_VERSION || !snap[0] ||
	    strcmp(string_or_empty(m, "snap"), snap) != 0 ||
	    strcmp(string_or_empty(m, "session_id"), str_of(c, "session_id")) !=
	            0 ||
	    !cJSON_IsNumber(seq) || !cJSON_IsNumber(ds_seq) ||
	    !cJSON_IsNumber(at)) {
		cJSON_Delete(m);
		return;
	}
	cJSON_ReplaceItemInObjectCaseSensitive(
	        c, "seq", cJSON_CreateNumber(seq->valuedouble));
	cJSON_DeleteItemFromObjectCaseSensitive(c, "ds_session");
	cJSON_AddStringToObject(c, "ds_session",
	                        string_or_empty(m, "ds_session"));
	cJSON_DeleteItemFromObjectCaseSensitive(c, "ds_seq");
	cJSON_AddNumberToObject(c, "ds_seq", ds_seq->valuedouble);
	cJSON_ReplaceItemInObjectCaseSensitive(
	        c, "saved_ms", cJSON_CreateNumber(at->valuedouble));
	cJSON_DeleteItemFromObjectCaseSensitive(c, "ds_tail");
	cJSON_ArrayForEach (
	        e, cJSON_GetObjectItemCaseSensitive(m, "guild_events")) {
		const char *t = string_or_empty(e, "t");

		if (t[0])
			hl_guild_event(
			        cJSON_GetObjectItemCaseSensitive(c, "guilds"),
			        t, cJSON_GetObjectItemCaseSensitive(e, "d"));
	}
	cJSON_Delete(m);
}

/* A mark file whose snapshot is gone goes too. */
static void drop_lone_mark(int dirfd, const char *name)
{
	char json_name[160];

	snprintf(json_name, sizeof(json_name), "%.*s.json",
	         (int)(strlen(name) - 5), name);
	if (faccessat(dirfd, json_name, F_OK, 0) != 0 && errno == ENOENT)
		unlinkat(dirfd, name, 0);
}

/*
 * Reads every session checkpoint under the state directory into
 * eng->saved. A damaged or stale file is removed and said in the log;
 * neither stops the engine.
 */
void hl_sessions_load(hl_engine *eng)
{
	DIR *d = opendir(eng->cfg.state_dir);
	struct dirent *de;
	int64_t now = hl_now_ms();
	int kept = 0, dropped = 0;

	eng->saved = cJSON_CreateArray();
	if (d == NULL || eng->saved == NULL) {
		if (d)
			closedir(d);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		size_t len = 0;
		char *text;
		cJSON *c, *saved;

		if (is_named(de->d_name, ".mark"))
			drop_lone_mark(dirfd(d), de->d_name);
		if (!is_named(de->d_name, ".json"))
			continue;
		text = read_small_file(dirfd(d), de->d_name, &len);
		c = text ? parse_checkpoint(text, len) : NULL;
		free(text);
		if (c)
			apply_mark(dirfd(d), de->d_name, c);
		saved = cJSON_GetObjectItemCaseSensitive(c, "saved_ms");
		if (c == NULL ||
		    now - (int64_t)saved->valuedouble > MAX_AGE_MS) {
			if (c == NULL)
				hl_logf(eng->log, HL_WARN,
				        "session checkpoint unreadable "
				        "file=%s; "
				        "removed",
				        de->d_name);
			cJSON_Delete(c);
			unlinkat(dirfd(d), de->d_name, 0);
			dropped++;
			continue;
		}
		cJSON_AddItemToArray(eng->saved, c);
		kept++;
	}
	closedir(d);
	if (kept || dropped)
		hl_logf(eng->log, HL_INFO,
		        "session checkpoints loaded resumable=%d dropped=%d",
		        kept, dropped);
}

/* ---- restoring (net thread) -------------------------------------------- */

static int shard_is(cJSON *c, const int shard[2])
{
	cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "shard");

	return cJSON_GetArrayItem(s, 0)->valueint == shard[0] &&
	       cJSON_GetArrayItem(s, 1)->valueint == shard[1];
}

/*
 * Gives a new bot the session its token and shard had in an earlier run,
 * if one was saved: the bot then RESUMEs, and holds what Discord sends
 * until the RESUME is confirmed. Returns 1 when a session was restored.
 */
int hl_session_restore(hl_bot *bot)
{
	hl_engine *eng = bot->eng;
	char key[65];
	cJSON *c;
	int i = 0;

	if (eng->saved == NULL)
		return 0;
	hl_token_key(bot->token, key);
	cJSON_ArrayForEach (c, eng->saved) {
		if (strcmp(str_of(c, "key"), key) == 0 &&
		    shard_is(c, bot->shard))
			break;
		i++;
	}
	memset(key, 0, sizeof(key));
	if (c == NULL)
		return 0;

	snprintf(bot->session_id, sizeof(bot->session_id), "%s",
	         str_of(c, "session_id"));
	bot->up_seq = (int64_t)cJSON_GetObjectItemCaseSensitive(c, "seq")
	                      ->valuedouble;
	free(bot->resume_url);
	bot->resume_url = strdup(str_of(c, "resume_url"));
	free(bot->ready_d);
	bot->ready_d = cJSON_PrintUnformatted(
	        cJSON_GetObjectItemCaseSensitive(c, "ready"));
	cJSON_Delete(bot->guilds);
	bot->guilds = cJSON_DetachItemFromObjectCaseSensitive(c, "guilds");
	if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "user_id")))
		snprintf(bot->user_id, sizeof(bot->user_id), "%s",
		         str_of(c, "user_id"));
	cJSON_Delete(cJSON_DetachItemFromArray(eng->saved, i));

	if (bot->resume_url == NULL || bot->ready_d == NULL ||
	    bot->guilds == NULL) {
		/* Out of memory: an ordinary IDENTIFY it is. */
		bot->session_id[0] = '\0';
		bot->up_seq = 0;
		free(bot->resume_url);
		bot->resume_url = NULL;
		hl_session_abandon(bot);
		return 0;
	}
	bot->held = cJSON_CreateArray();
	bot->restoring = 1;
	bot->saved_seq = bot->up_seq;
	hl_logf(eng->log, HL_INFO,
	        "session restored from checkpoint bot=%s seq=%lld",
	        bot->token_hash, (long long)bot->up_seq);
	return 1;
}

/* The saved checkpoint of the downstream session sid of token, or NULL. */
static cJSON *saved_down_session(hl_engine *eng, const char *token,
                                 const char *sid)
{
	cJSON *c, *ds;
	char key[65];

	if (eng->saved == NULL)
		return NULL;
	hl_token_key(token, key);
	cJSON_ArrayForEach (c, eng->saved) {
		ds = cJSON_GetObjectItemCaseSensitive(c, "ds_session");
		if (cJSON_IsString(ds) && strcmp(ds->valuestring, sid) == 0 &&
		    strcmp(str_of(c, "key"), key) == 0)
			break;
	}
	memset(key, 0, sizeof(key));
	return c;
}

/* Fills the replay ring with the saved dispatches first..last. */
static void restore_tail(hl_bot *bot, cJSON *tail, int64_t first, int64_t last)
{
	cJSON *item;

	bot->ds_seq = last;
	hl_replay_clear(&bot->replay, first);
	cJSON_ArrayForEach (item, tail) {
		char *frame =
		        cJSON_IsString(item) ? strdup(item->valuestring) : NULL;

		if (frame == NULL) {
			/* A hole would replay the wrong events: none, then. */
			hl_replay_clear(&bot->replay, last + 1);
			return;
		}
		hl_replay_push(&bot->replay, frame, strlen(frame));
	}
}

/* The restored bot goes on with the host's session as it was: the host
 * has READY and all up to the saved tail, which is ready for its RESUME. */
static void keep_host_session(hl_bot *bot, cJSON *tail, int64_t last)
{
	int64_t first =
	        last + 1 - (cJSON_IsArray(tail) ? cJSON_GetArraySize(tail) : 0);

	cJSON_Delete(bot->held);
	bot->held = NULL;
	bot->restoring = 0;
	restore_tail(bot, tail, first, last);
	bot->ds_host_seq = first - 1;
	bot->ds_bound = 1;
}

/*
 * A host RESUMEs a downstream session of an earlier engine: when its
 * sequence is the checkpoint's, or one the saved tail covers, makes the bot
 * from the checkpoint, with the host's session as it was, and starts its
 * upstream RESUME. Returns the bot, or NULL when the RESUME cannot be served
 * (the host then gets an invalid session and IDENTIFYs, which the checkpoint
 * still serves).
 */
hl_bot *hl_session_resume_down(hl_engine *eng, const char *token,
                               const char *sid, int64_t seq)
{
	cJSON *c = saved_down_session(eng, token, sid), *ds_seq, *identify, *s;
	cJSON *tail = cJSON_GetObjectItemCaseSensitive(c, "ds_tail");
	int64_t last, first;
	int shard[2];
	hl_bot *bot;

	ds_seq = cJSON_GetObjectItemCaseSensitive(c, "ds_seq");
	identify = cJSON_GetObjectItemCaseSensitive(c, "identify");
	if (!cJSON_IsNumber(ds_seq) || !cJSON_IsObject(identify))
		return NULL;
	last = (int64_t)ds_seq->valuedouble;
	first = last + 1 - (cJSON_IsArray(tail) ? cJSON_GetArraySize(tail) : 0);
	if (seq < first - 1 || seq > last)
		return NULL;
	s = cJSON_GetObjectItemCaseSensitive(c, "shard");
	shard[0] = cJSON_GetArrayItem(s, 0)->valueint;
	shard[1] = cJSON_GetArrayItem(s, 1)->valueint;
	if (hl_bot_find(eng, token, shard) != NULL)
		return NULL;

	/* The checkpoint goes once the bot takes it; its tail stays. */
	tail = cJSON_DetachItemFromObjectCaseSensitive(c, "ds_tail");
	identify = cJSON_Duplicate(identify, 1);
	cJSON_AddStringToObject(identify, "token", token);
	bot = hl_bot_new(eng, token, shard, identify);
	if (bot == NULL) {
		cJSON_Delete(identify);
		cJSON_Delete(tail);
		return NULL;
	}
	snprintf(bot->ds_session, sizeof(bot->ds_session), "%s", sid);
	if (hl_session_restore(bot))
		keep_host_session(bot, tail, last);
	cJSON_Delete(tail);
	/* Else a plain new bot: the host is refused and IDENTIFYs. */
	hl_up_start(bot);
	return bot;
}

/* Removes the saved checkpoints of key and shard. */
static void forget_saved(hl_engine *eng, const char *key, const int shard[2])
{
	cJSON *c = eng->saved ? eng->saved->child : NULL, *next;

	for (; c; c = next) {
		next = c->next;
		if (strcmp(str_of(c, "key"), key) == 0 && shard_is(c, shard))
			cJSON_Delete(cJSON_DetachItemViaPointer(eng->saved, c));
	}
}

/*
 * A bot that the engine before this one in the process handed over (see
 * handover.h), from the host's IDENTIFY and its session's checkpoint, if
 * it had a session. The host keeps the downstream session it had, whose
 * RESUME gets what the host has not confirmed; a host that never had one
 * gets READY once the upstream session is confirmed, or now when live
 * (the connection goes on). Returns the bot, or NULL without memory;
 * identify is the bot's from then on.
 */
hl_bot *hl_session_adopt(hl_engine *eng, const char *token, const int shard[2],
                         cJSON *identify, const char *checkpoint, int live)
{
	cJSON *c = checkpoint ? parse_checkpoint(checkpoint, strlen(checkpoint))
	                      : NULL;
	cJSON *tail, *ds, *ds_seq;
	int64_t last;
	hl_bot *bot = hl_bot_new(eng, token, shard, identify);

	if (bot == NULL || c == NULL ||
	    (eng->saved == NULL &&
	     (eng->saved = cJSON_CreateArray()) == NULL)) {
		if (bot == NULL)
			cJSON_Delete(identify);
		cJSON_Delete(c);
		return bot;
	}

	/* This checkpoint is newer than any the disk held for the bot. */
	forget_saved(eng, str_of(c, "key"), shard);
	ds = cJSON_GetObjectItemCaseSensitive(c, "ds_session");
	ds_seq = cJSON_GetObjectItemCaseSensitive(c, "ds_seq");
	last = cJSON_IsNumber(ds_seq) ? (int64_t)ds_seq->valuedouble : 0;
	if (cJSON_IsString(ds))
		snprintf(bot->ds_session, sizeof(bot->ds_session), "%s",
		         ds->valuestring);
	tail = cJSON_DetachItemFromObjectCaseSensitive(c, "ds_tail");
	cJSON_AddItemToArray(eng->saved, c);
	if (!hl_session_restore(bot)) {
		cJSON_Delete(tail);
		return bot;
	}
	if (last > 0 && bot->ds_session[0]) {
		keep_host_session(bot, tail, last);
	} else if (live) {
		cJSON_Delete(bot->held);
		bot->held = NULL;
		bot->restoring = 0;
		hl_down_session_start(bot);
	}
	cJSON_Delete(tail);
	return bot;
}

/* Keeps a dispatch that arrived before the RESUME was confirmed. */
void hl_session_hold(hl_bot *bot, cJSON *msg)
{
	cJSON_AddItemToArray(bot->held, cJSON_Duplicate(msg, 1));
}

/*
 * Discord confirmed the restored session: the host gets its READY and
 * guilds, then what was held, in order. Returns the held dispatches for
 * the caller to forward; the caller frees them.
 */
cJSON *hl_session_confirmed(hl_bot *bot)
{
	cJSON *held = bot->held;

	bot->held = NULL;
	bot->restoring = 0;
	hl_down_session_start(bot);
	return held;
}

/* The restored session is gone: back to an ordinary IDENTIFY, unseen. */
void hl_session_abandon(hl_bot *bot)
{
	cJSON_Delete(bot->held);
	bot->held = NULL;
	bot->restoring = 0;
	free(bot->ready_d);
	bot->ready_d = NULL;
	cJSON_Delete(bot->guilds);
	bot->guilds = cJSON_CreateObject();
}

/* ---- saving (net thread builds, disk thread writes) --------------------- */

static void submit_file(hl_engine *eng, const hl_bot *bot, const char *ext,
                        const char *text)
{
	hl_job *job = calloc(1, sizeof(*job));
	char name[128];

	if (job == NULL)
		return;
	hl_session_file(bot->token, bot->shard, ext, name, sizeof(name));
	job->kind = HL_JOB_SESSION;
	job->file = strdup(name);
	if (job->file == NULL ||
	    (text && hl_buf_append(&job->body, text, strlen(text)) != 0)) {
		hl_job_free(job);
		return;
	}
	hl_disk_submit(eng->disk, job);
}

/* The dispatches after the last one the host confirmed, oldest first,
 * or none when they are too many to keep. */
static cJSON *unconfirmed_tail(const hl_bot *bot, size_t max_bytes)
{
	cJSON *tail = cJSON_CreateArray();
	size_t bytes = 0;
	int64_t seq;

	for (seq = bot->ds_host_seq + 1; tail && seq <= bot->ds_seq; seq++) {
		size_t len;
		const char *frame = hl_replay_at(&bot->replay, seq, &len);

		cJSON *item = NULL;

		bytes += frame ? len : 0;
		if (frame && bytes <= max_bytes)
			item = cJSON_CreateString(frame);
		if (item == NULL) {
			/* A hole would renumber what follows: none, then. */
			cJSON_Delete(tail);
			return cJSON_CreateArray();
		}
		cJSON_AddItemToArray(tail, item);
	}
	return tail;
}

/* The checkpoint of bot's session as text, with the dispatches the host
 * has not confirmed when they take at most tail_max bytes (none for 0). */
char *hl_session_snapshot(hl_bot *bot, size_t tail_max)
{
	cJSON *c = cJSON_CreateObject(), *shard, *ready, *identify;
	char key[65];
	char *text;

	hl_token_key(bot->token, key);
	/* Marks written after it name it; older ones name another. */
	hl_random_hex(bot->snapshot_id, 8);
	cJSON_AddNumberToObject(c, "v", FORMAT_VERSION);
	cJSON_AddStringToObject(c, "snap", bot->snapshot_id);
	cJSON_AddStringToObject(c, "key", key);
	memset(key, 0, sizeof(key));
	shard = cJSON_AddArrayToObject(c, "shard");
	cJSON_AddItemToArray(shard, cJSON_CreateNumber(bot->shard[0]));
	cJSON_AddItemToArray(shard, cJSON_CreateNumber(bot->shard[1]));
	cJSON_AddStringToObject(c, "user_id", bot->user_id);
	cJSON_AddStringToObject(c, "session_id", bot->session_id);
	cJSON_AddNumberToObject(c, "seq", (double)bot->up_seq);
	cJSON_AddStringToObject(c, "resume_url", bot->resume_url);
	cJSON_AddNumberToObject(c, "saved_ms", (double)hl_now_ms());
	ready = cJSON_Parse(bot->ready_d);
	cJSON_AddItemToObject(c, "ready", ready ? ready : cJSON_CreateObject());
	cJSON_AddItemReferenceToObject(c, "guilds", bot->guilds);
	cJSON_AddStringToObject(c, "ds_session", bot->ds_session);
	cJSON_AddNumberToObject(c, "ds_seq", (double)bot->ds_seq);
	if (tail_max > 0)
		cJSON_AddItemToObject(c, "ds_tail",
		                      unconfirmed_tail(bot, tail_max));
	identify = cJSON_Duplicate(bot->identify, 1);
	cJSON_DeleteItemFromObjectCaseSensitive(identify, "token");
	cJSON_AddItemToObject(c, "identify", identify);
	text = cJSON_PrintUnformatted(c);
	cJSON_Delete(c);
	return text;
}

/*
 * Where the session is now: what the mark file adds to the snapshot it
 * names, with the guild changes folded since that snapshot.
 */
static char *mark(const hl_bot *bot)
{
	cJSON *m = cJSON_CreateObject();
	char *text;

	cJSON_AddNumberToObject(m, "v", FORMAT_VERSION);
	cJSON_AddStringToObject(m, "snap", bot->snapshot_id);
	cJSON_AddStringToObject(m, "session_id", bot->session_id);
	cJSON_AddNumberToObject(m, "seq", (double)bot->up_seq);
	cJSON_AddStringToObject(m, "ds_session", bot->ds_session);
	cJSON_AddNumberToObject(m, "ds_seq", (double)bot->ds_seq);
	cJSON_AddNumberToObject(m, "saved_ms", (double)hl_now_ms());
	if (bot->guild_events)
		cJSON_AddItemReferenceToObject(m, "guild_events",
		                               bot->guild_events);
	text = cJSON_PrintUnformatted(m);
	cJSON_Delete(m);
	return text;
}

/*
 * A guild event changed what the bot keeps of a guild. A mark carries the
 * changes since the snapshot, so that a session restored from both knows
 * its guilds as they were at the mark's sequence; a new guild, a guild
 * gone, or more than MARK_EVENTS_MAX bytes of changes have the snapshot
 * saved whole instead.
 */
void hl_session_guild_changed(hl_bot *bot, const char *t, cJSON *d)
{
	cJSON *e;
	char *text;

	if (bot->eng->disk == NULL || bot->snapshot_now)
		return;
	if (strcmp(t, "GUILD_CREATE") == 0 || strcmp(t, "GUILD_DELETE") == 0)
		goto whole;
	text = cJSON_PrintUnformatted(d);
	if (text == NULL)
		goto whole;
	bot->guild_events_bytes += strlen(text) + strlen(t) + 16;
	free(text);
	if (bot->guild_events_bytes > MARK_EVENTS_MAX)
		goto whole;
	if (bot->guild_events == NULL)
		bot->guild_events = cJSON_CreateArray();
	e = cJSON_CreateObject();
	if (bot->guild_events == NULL || e == NULL) {
		cJSON_Delete(e);
		goto whole;
	}
	cJSON_AddStringToObject(e, "t", t);
	cJSON_AddItemToObject(e, "d", cJSON_Duplicate(d, 1));
	cJSON_AddItemToArray(bot->guild_events, e);
	return;

whole:
	bot->snapshot_now = 1;
}

static void clear_guild_events(hl_bot *bot)
{
	cJSON_Delete(bot->guild_events);
	bot->guild_events = NULL;
	bot->guild_events_bytes = 0;
}

/*
 * Saves every session that moved since its last checkpoint, at most once
 * a second each, and every quiet one once a minute; or all of them now
 * when final is set (engine stop). Most saves are only the session's
 * position, in the small mark file, with the guild changes since the
 * snapshot; the snapshot (READY and the guilds) is written whole for a
 * new session, a new or deleted guild, a mark that would grow too large,
 * and at the end, so a bot in many large guilds does not rewrite
 * megabytes a second while events flow.
 */
void hl_session_checkpoint(hl_engine *eng, int final)
{
	int64_t now = hl_mono_ms();
	hl_bot *bot;

	if (eng->disk == NULL)
		return;
	for (bot = eng->bots; bot; bot = bot->next) {
		char *text;
		int moved, whole;

		if (!bot->session_id[0] || bot->resume_url == NULL ||
		    bot->ready_d == NULL || bot->restoring)
			continue;
		moved = bot->saved_seq != bot->up_seq ||
		        bot->saved_ds_seq != bot->ds_seq;
		whole = final || bot->snapshot_now || !bot->snapshot_id[0];
		/* A quiet session is saved again now and then, so that its
		 * time says it was alive, and always at the end. */
		if (!final && !moved && !whole &&
		    now - bot->saved_at_ms < REFRESH_MS)
			continue;
		if (!final && now - bot->saved_at_ms < SAVE_EVERY_MS)
			continue;
		text = whole ? hl_session_snapshot(bot,
		                                   final ? MAX_TAIL_BYTES : 0)
		             : mark(bot);
		if (text == NULL)
			continue;
		submit_file(eng, bot, whole ? "json" : "mark", text);
		free(text);
		bot->saved_seq = bot->up_seq;
		bot->saved_ds_seq = bot->ds_seq;
		bot->saved_at_ms = now;
		if (whole) {
			bot->snapshot_now = 0;
			clear_guild_events(bot);
		}
	}
}

/* The session can no longer be resumed: its checkpoint goes. */
void hl_session_forget(hl_bot *bot)
{
	if (bot->eng->disk == NULL)
		return;
	submit_file(bot->eng, bot, "json", NULL);
	submit_file(bot->eng, bot, "mark", NULL);
	bot->saved_seq = 0;
	bot->snapshot_id[0] = '\0';
	clear_guild_events(bot);
}

/*
 * Disk thread: replaces DIR/job->file with job->body crash-safely, or
 * removes it when the body is empty. Returns 0 or a negative errno.
 */
int hl_session_write(int dirfd, const hl_job *job)
{
	char tmp[160];
	int fd, rc = 0;
	size_t off = 0;

	if (job->body.len == 0) {
		if (unlinkat(dirfd, job->file, 0) != 0 && errno != ENOENT)
			return -errno;
		return 0;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", job->file);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < job->body.len) {
		ssize_t n =
		        write(fd, job->body.data + off, job->body.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0) {
		rc = -errno;
		goto fail;
	}
	close(fd);
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, job->file) != 0) {
		rc = -errno;
		goto fail;
	}
	return fsync(dirfd) != 0 ? -errno : 0;

fail:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return rc;
}
