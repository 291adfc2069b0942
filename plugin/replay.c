/*
 * replay.c - the bounded buffer of dispatches kept per bot, so that a host
 * that reconnects can RESUME its downstream session and miss nothing.
 *
 * Net thread only. Items are the exact payloads sent downstream; item k
 * (counting from the oldest) has sequence number first_seq + k. The ring
 * starts small and doubles as it fills, up to its cap, so an idle bot
 * does not pay for a full buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FIRST_SLOTS 32

int hl_replay_init(hl_replay *r, int cap)
{
	memset(r, 0, sizeof(*r));
	r->slots = cap < FIRST_SLOTS ? cap : FIRST_SLOTS;
	r->items = calloc((size_t)r->slots, sizeof(*r->items));
	r->lens = calloc((size_t)r->slots, sizeof(*r->lens));
	if (r->items == NULL || r->lens == NULL) {
		hl_replay_free(r);
		return -1;
	}
	r->cap = cap;
	r->first_seq = 1;
	return 0;
}

/* Doubles the ring (up to cap), oldest item first. 0, or -1 when full. */
static int grow(hl_replay *r)
{
	int slots = r->slots * 2 < r->cap ? r->slots * 2 : r->cap, i;
	char **items;
	size_t *lens;

	if (slots <= r->slots)
		return -1;
	items = calloc((size_t)slots, sizeof(*items));
	lens = calloc((size_t)slots, sizeof(*lens));
	if (items == NULL || lens == NULL) {
		free(items);
		free(lens);
		return -1;
	}
	for (i = 0; i < r->count; i++) {
		items[i] = r->items[(r->head + i) % r->slots];
		lens[i] = r->lens[(r->head + i) % r->slots];
	}
	free(r->items);
	free(r->lens);
	r->items = items;
	r->lens = lens;
	r->slots = slots;
	r->head = 0;
	return 0;
}

void hl_replay_clear(hl_replay *r, int64_t next_seq)
{
	while (r->count > 0) {
		free(r->items[r->head]);
		r->items[r->head] = NULL;
		r->head = (r->head + 1) % r->slots;
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

	if (r->count == r->slots && grow(r) != 0) {
		/* Full: the oldest goes. */
		free(r->items[r->head]);
		r->items[r->head] = NULL;
		r->head = (r->head + 1) % r->slots;
		r->count--;
		r->first_seq++;
	}
	slot = (r->head + r->count) % r->slots;
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
	slot = (int)((r->head + k) % r->slots);
	*len = r->lens[slot];
	return r->items[slot];
}
