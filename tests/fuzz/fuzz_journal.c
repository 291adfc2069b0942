/*
 * fuzz_journal.c - libFuzzer target for the journal scanner: any bytes
 * read as a journal image must give sane entries, consistent counts and
 * no leaks, and the entries found must encode and scan back unchanged.
 * Single-threaded, no files: it runs hl_journal_scan on memory only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ensure.h"
#include "journal.h"

static int all_hex(const char *s)
{
	for (; *s != '\0'; s++) {
		if (strchr("0123456789abcdefABCDEF", *s) == NULL)
			return 0;
	}
	return 1;
}

static void check_entry(const hl_jentry *e, uint64_t max_id)
{
	size_t n = strlen(e->nonce), m = strlen(e->method);

	ENSURE(e->id >= 1 && e->id <= max_id);
	ENSURE(n >= 1 && n <= 25);
	ENSURE(strlen(e->key) == 64 && all_hex(e->key));
	ENSURE(m >= 1 && m <= 7);
	ENSURE(e->path != NULL && e->path[0] != '\0');
	ENSURE(e->content_type != NULL);
	ENSURE(e->body != NULL || e->body_len == 0);
}

static int same_entry(const hl_jentry *a, const hl_jentry *b)
{
	return a->id == b->id && a->created_ms == b->created_ms &&
	       strcmp(a->nonce, b->nonce) == 0 && strcmp(a->key, b->key) == 0 &&
	       strcmp(a->method, b->method) == 0 &&
	       strcmp(a->path, b->path) == 0 &&
	       strcmp(a->content_type, b->content_type) == 0 &&
	       a->body_len == b->body_len &&
	       (a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0);
}

/* Encodes the entries found and scans them again: same entries, no
 * damage. */
static void round_trip(const hl_jscan *s)
{
	unsigned char *img = NULL, *rec, *grown;
	size_t len = 0, reclen, i;
	hl_jscan again;

	for (i = 0; i < s->npending; i++) {
		ENSURE(hl_jentry_encode(s->pending[i], s->pending[i]->id, &rec,
		                        &reclen) == 0);
		grown = realloc(img, len + reclen);
		ENSURE(grown != NULL);
		img = grown;
		memcpy(img + len, rec, reclen);
		len += reclen;
		free(rec);
	}

	ENSURE(hl_journal_scan(img, len, &again) == 0);
	ENSURE(again.npending == s->npending);
	ENSURE(again.damaged == 0 && again.bad_bytes == 0);
	for (i = 0; i < s->npending; i++)
		ENSURE(same_entry(again.pending[i], s->pending[i]));
	hl_jscan_free(&again);
	free(img);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	hl_jscan s;
	size_t i;

	if (hl_journal_scan(data, size, &s) != 0)
		return 0;

	ENSURE((s.npending == 0) == (s.pending == NULL));
	ENSURE(s.bad_bytes <= size);
	ENSURE((s.damaged == 0) == (s.bad_bytes == 0));
	ENSURE(s.damaged >= 0 && (size_t)s.damaged <= s.bad_bytes);
	for (i = 0; i < s.npending; i++) {
		check_entry(s.pending[i], s.max_id);
		if (i > 0)
			ENSURE(s.pending[i - 1]->id < s.pending[i]->id);
	}

	round_trip(&s);
	hl_jscan_free(&s);
	return 0;
}
