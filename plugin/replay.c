/*
 * replay.c - the bounded buffer of dispatches kept per bot, so that a host
 * that reconnects can RESUME its downstream session and miss nothing.
 *
 * Net thread only. Items are the exact payloads sent downstream; item k
 * (counting from the oldest) has sequence number first_seq + k.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int hl_replay_init(hl_replay *r, int cap)
{
	memset(r, 0, sizeof(*r));
	r->items = calloc((size_t)cap, sizeof(*r->items));
	r->lens = calloc((size_t)cap, sizeof(*r->lens));
	if (r->items == NULL || r->lens == NULL) {
		hl_replay_free(r);
		return -1;
	}
	r->cap = cap;
	r->first_seq = 1;
	return 0;
}

void hl_replay_clear(hl_replay *r, int64_t next_seq)
{
	while (r->count > 0) {
		free(r->items[r->head]);
		r->items[r->head] = NULL;
		r->head = (r->head + 1) % r->cap;
		r->count--;
	}
	r->head = 0;
	r->first_seq = next_seq;
}

void hl_replay_free(hl_replay *r)
{
	if (r->items)
		hl_replay_clear(r, 1);
	free(r->items);
	free(r->lens);
	memset(r, 0, sizeof(*r));
}

void hl_replay_push(hl_replay *r, char *payload, size_t len)
{
	int slot;

	if (r->count == r->cap) {
		free(r->items[r->head]);
		r->items[r->head] = NULL;
		r->head = (r->head + 1) % r->cap;
		r->count--;
		r->first_seq++;
	}
	slot = (r->head + r->count) % r->cap;
	r->items[slot] = payload;
	r->lens[slot] = len;
	r->count++;
}

/* True when every dispatch after after_seq is still in the buffer. */
int hl_replay_covers(const hl_replay *r, int64_t after_seq)
{
	int64_t last = r->first_seq + r->count - 1;

	return after_seq >= r->first_seq - 1 && after_seq <= last;
}

const char *hl_replay_at(const hl_replay *r, int64_t seq, size_t *len)
{
	int64_t k = seq - r->first_seq;
	int slot;

	if (k < 0 || k >= r->count)
		return NULL;
	slot = (int)((r->head + k) % r->cap);
	*len = r->lens[slot];
	return r->items[slot];
}
