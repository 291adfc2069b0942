/*
 * log.c - the engine's log buffer.
 *
 * Engine threads append records; the host drains them with
 * hl_logs_drain(). Each record is one JSON line. The buffer is bounded:
 * when the host does not drain, the oldest records are dropped and the
 * next record drained says how many were lost. The lock is held only to
 * copy a record in or out.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LOG_RECORD_MAX 1024
#define LOG_RECORDS 1024

struct hl_log {
	pthread_mutex_t lock;
	_Atomic int min; /* enum hl_level; set from any thread */
	char (*ring)[LOG_RECORD_MAX];
	int head;
	int count;
	long dropped;
};

static const char *level_names[] = { "debug", "info", "warn", "error" };

hl_log *hl_log_new(enum hl_level min)
{
	hl_log *log = calloc(1, sizeof(*log));

	if (log == NULL)
		return NULL;
	log->ring = calloc(LOG_RECORDS, LOG_RECORD_MAX);
	if (log->ring == NULL) {
		free(log);
		return NULL;
	}
	pthread_mutex_init(&log->lock, NULL);
	log->min = min;
	return log;
}

void hl_log_free(hl_log *log)
{
	if (log == NULL)
		return;
	pthread_mutex_destroy(&log->lock);
	free(log->ring);
	free(log);
}

void hl_log_set_level(hl_log *log, enum hl_level min)
{
	log->min = (int)min;
}

int hl_level_parse(const char *name, enum hl_level *out)
{
	int i;

	for (i = 0; i <= HL_ERROR; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (enum hl_level)i;
			return 0;
		}
	}
	return -1;
}

/* Appends s to dst as the inside of a JSON string; returns the new end. */
static size_t json_escape(char *dst, size_t at, size_t cap, const char *s)
{
	for (; *s && at + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			dst[at++] = '\\';
			dst[at++] = (char)c;
		} else if (c < 0x20) {
			at += (size_t)snprintf(dst + at, cap - at, "\\u%04x",
			                       c);
		} else {
			dst[at++] = (char)c;
		}
	}
	return at;
}

/* The slot of a new record, the oldest dropped when full. Under lock. */
static char *new_record(hl_log *log)
{
	char *rec;

	if (log->count == LOG_RECORDS) {
		log->head = (log->head + 1) % LOG_RECORDS;
		log->count--;
		log->dropped++;
	}
	rec = log->ring[(log->head + log->count) % LOG_RECORDS];
	log->count++;
	return rec;
}

static void log_put(hl_log *log, enum hl_level level, const char *msg)
{
	char *rec;
	size_t at;

	pthread_mutex_lock(&log->lock);
	rec = new_record(log);
	at = (size_t)snprintf(rec, LOG_RECORD_MAX,
	                      "{\"t\":%lld,\"level\":\"%s\",\"msg\":\"",
	                      (long long)hl_now_ms(), level_names[level]);
	at = json_escape(rec, at, LOG_RECORD_MAX - 4, msg);
	memcpy(rec + at, "\"}\n", 4);
	pthread_mutex_unlock(&log->lock);
}

/* Appends a record as another engine's log wrote it (one JSON line of
 * len bytes, without its newline); a longer one is dropped. */
void hl_log_put_record(hl_log *log, const char *line, size_t len)
{
	char *rec;

	if (len == 0 || len + 2 > LOG_RECORD_MAX)
		return;
	pthread_mutex_lock(&log->lock);
	rec = new_record(log);
	memcpy(rec, line, len);
	memcpy(rec + len, "\n", 2);
	pthread_mutex_unlock(&log->lock);
}

void hl_logf(hl_log *log, enum hl_level level, const char *fmt, ...)
{
	char msg[LOG_RECORD_MAX / 2];
	va_list ap;

	if (log == NULL || (int)level < log->min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_put(log, level, msg);
}

size_t hl_log_drain(hl_log *log, char *buf, size_t buflen)
{
	size_t used = 0;

	if (buflen == 0)
		return 0;
	pthread_mutex_lock(&log->lock);
	if (log->dropped) {
		char note[96];
		int n = snprintf(note, sizeof(note),
		                 "{\"t\":%lld,\"level\":\"warn\",\"msg\":"
		                 "\"log buffer full dropped=%ld\"}\n",
		                 (long long)hl_now_ms(), log->dropped);

		if ((size_t)n < buflen) {
			memcpy(buf, note, (size_t)n);
			used = (size_t)n;
			log->dropped = 0;
		}
	}
	while (log->count > 0) {
		const char *rec = log->ring[log->head];
		size_t n = strlen(rec);

		if (used + n >= buflen)
			break;
		memcpy(buf + used, rec, n);
		used += n;
		log->head = (log->head + 1) % LOG_RECORDS;
		log->count--;
	}
	pthread_mutex_unlock(&log->lock);
	buf[used] = '\0';
	return used;
}
